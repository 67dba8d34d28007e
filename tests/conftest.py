"""Shared fixtures: a real PostgreSQL and a real Mosquitto.

- PARKPULSE_TEST_DATABASE_URL points at a server (default: local 127.0.0.1:5432, trust auth);
  the run is aborted with a clear message when it cannot be reached or started.
- Each test that asks for `db` gets a fresh database cloned from a migrated template.
- `broker` is a private Mosquitto with ParkPulse's configuration on a free port.
- Any test that leaves threads running fails (`_no_leaked_threads`).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from parkpulse.db import migrate, server_dsn
from parkpulse.services import MosquittoBroker, ServiceUnavailable, ensure_postgres

DEFAULT_TEST_DSN = "postgresql://127.0.0.1:5432/postgres"


def _admin_dsn() -> str:
    return os.environ.get("PARKPULSE_TEST_DATABASE_URL", DEFAULT_TEST_DSN)


@pytest.fixture(scope="session")
def pg_admin() -> str:
    """DSN of a maintenance database on the test server (warmed up once)."""
    dsn = _admin_dsn()
    if "PARKPULSE_TEST_DATABASE_URL" not in os.environ:
        try:
            ensure_postgres()
        except ServiceUnavailable as exc:
            pytest.exit(f"PostgreSQL needed for the tests: {exc}", returncode=3)
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.exit(f"PostgreSQL at {dsn} is not usable for the tests: {exc}", returncode=3)
    return dsn


def _drop(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def db_template(pg_admin: str) -> Iterator[str]:
    """A migrated database used as the template of every test database."""
    name = f"pp_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    dsn = server_dsn(pg_admin, name)
    migrate(dsn, prefer="plain")
    yield name
    _drop(pg_admin, name)


@pytest.fixture
def make_db(pg_admin: str, db_template: str) -> Iterator[Callable[[], str]]:
    """Factory: each call returns the DSN of a new, migrated, empty database."""
    made: list[str] = []

    def make() -> str:
        name = f"pp_t_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            for attempt in range(20):
                try:
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                            sql.Identifier(name), sql.Identifier(db_template)
                        )
                    )
                    break
                except psycopg.errors.ObjectInUse:
                    time.sleep(0.1 * (attempt + 1))
        made.append(name)
        return server_dsn(pg_admin, name)

    yield make
    for name in made:
        _drop(pg_admin, name)


@pytest.fixture
def db(make_db: Callable[[], str]) -> str:
    """DSN of a fresh migrated database for this test."""
    return make_db()


@pytest.fixture(scope="session")
def broker() -> Iterator[MosquittoBroker]:
    """A private Mosquitto shared by the session (tests use unique park ids to stay apart)."""
    try:
        b = MosquittoBroker().start()
    except ServiceUnavailable as exc:
        pytest.exit(f"Mosquitto needed for the tests: {exc}", returncode=3)
    yield b
    b.close()


@pytest.fixture
def own_broker() -> Iterator[MosquittoBroker]:
    """A private Mosquitto for one test, free to be stopped and restarted."""
    b = MosquittoBroker().start()
    yield b
    b.close()


@pytest.fixture
def unique_id() -> str:
    """A fresh lowercase id for parks, firms and gateways of one test."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if leaked:
        pytest.fail(f"test left threads running: {[t.name for t in leaked]}")
