"""Fixtures of the ingest tests: a registered synthetic park and ingest processes (real
subprocesses of `python -m ingest run`) against the real PostgreSQL and a real Mosquitto.
They live in ingest_testkit.py: test modules import helpers from there, because `from conftest
import` picks whichever conftest was loaded last when several test folders run in one session."""

from ingest_testkit import park, start_ingest

__all__ = ["park", "start_ingest"]
