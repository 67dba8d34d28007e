"""Fixtures of the console tests: a seeded park pair, users of every role, a TestClient and a
real uvicorn server (`parkpulse console serve` as a child process). They live in console_testkit.py:
test modules import helpers from there, because `from conftest import` picks whichever conftest
was loaded last when several test folders run in one session."""

from console_testkit import browser, client_as, live_server, make_client, wait_for, world

__all__ = ["browser", "client_as", "live_server", "make_client", "wait_for", "world"]
