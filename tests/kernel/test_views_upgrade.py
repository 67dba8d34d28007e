"""Views and functions from the idempotent view files (parkpulse/db/views/), re-applied by every migrate.

An install migrated before the view files existed is emulated by migrating with the numbered
migrations only (the view step switched off, its bookkeeping table dropped): that is exactly the
schema the code before the view files left behind. Today's migrate() must then leave every view
and function as a fresh install has them, keep the data and the grants, and a second migrate()
must change nothing. The TimescaleDB variant runs when PARKPULSE_TEST_TIMESCALE_URL is set.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from parkpulse.db import StorePath, _migrate, list_migrations, list_view_files, migrate, server_dsn, status
from parkpulse.registry import import_registry
from parkpulse.synthetic import synthetic_park, write_readings

TS_URL = os.environ.get("PARKPULSE_TEST_TIMESCALE_URL")
T0 = datetime(2026, 3, 10, 0, 0, tzinfo=UTC)
# The migrations that still define views or functions themselves: the ones shipped before the view
# files existed (existing databases record them as applied, so they are never edited), and 0020,
# whose append-only triggers need their function when they are created, before the view step runs.
DEFINES_VIEWS = {1, 2, 3, 10, 11, 12, 20, 100, 200, 300, 301, 302, 303, 400}

PATHS: tuple[StorePath, ...] = ("plain", "timescale")
Snapshot = dict[str, object]


def _migrate_as_before(dsn: str, monkeypatch: pytest.MonkeyPatch, prefer: str) -> None:
    """The schema as the code before the view files left it: numbered migrations only."""
    with monkeypatch.context() as m:
        m.setattr(_migrate, "_apply_views", lambda *_a, **_k: None)
        migrate(dsn, prefer=prefer)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE schema_views")


def _seed(dsn: str, park: str) -> None:
    with psycopg.connect(dsn) as conn:
        import_registry(conn, synthetic_park(park, firms=1, meters_per_gateway=2))
        dev = {r[0]: r[1] for r in conn.execute("SELECT device_id, device_pk FROM devices")}
        write_readings(
            conn, [(dev["m000"], 1, T0 + timedelta(minutes=15 * i), 100.0 + i, 0) for i in range(20)]
        )
        conn.execute("SELECT pp_refresh_rollups()")
        conn.execute("GRANT SELECT ON v_devices, v_device_last_seen TO PUBLIC")  # as deploy's grants do
        conn.commit()


def _snapshot(dsn: str) -> Snapshot:
    with psycopg.connect(dsn) as conn:
        views: dict[str, str] = dict(
            conn.execute(
                "SELECT c.relname, pg_get_viewdef(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'v' AND c.relname LIKE 'v\\_%'"
            ).fetchall()
        )
        functions = sorted(
            r[0]
            for r in conn.execute(
                "SELECT pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'public' AND p.proname LIKE 'pp\\_%' AND p.prokind = 'f'"
            )
        )
        columns = conn.execute(
            "SELECT table_name, string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) "
            "FROM information_schema.columns WHERE table_schema = 'public' AND table_name LIKE 'v\\_%' GROUP BY 1"
        ).fetchall()
        return {"views": views, "functions": functions, "columns": sorted(columns)}


def _data(dsn: str) -> tuple[object, ...]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM devices), (SELECT count(*) FROM readings), (SELECT sum(value) FROM readings), "
            "(SELECT count(*) FROM v_readings_15m), (SELECT count(*) FROM v_device_last_seen)"
        ).fetchone()
        return tuple(row or ())


def _bookkeeping(dsn: str) -> tuple[object, ...]:
    with psycopg.connect(dsn) as conn:
        return (
            conn.execute("SELECT * FROM schema_views ORDER BY file").fetchall(),
            conn.execute("SELECT * FROM schema_migrations ORDER BY version").fetchall(),
            conn.execute(
                "SELECT relname, relacl::text FROM pg_class WHERE relname IN ('v_devices', 'v_device_last_seen') "
                "ORDER BY relname"
            ).fetchall(),
        )


def _check_upgrade(old: str, fresh: str, park: str, monkeypatch: pytest.MonkeyPatch, prefer: str) -> None:
    _migrate_as_before(old, monkeypatch, prefer)
    _seed(old, park)
    data = _data(old)
    assert migrate(old, prefer=prefer) == []
    migrate(fresh, prefer=prefer)
    assert _snapshot(old) == _snapshot(fresh)  # today's definitions, as a fresh install has them
    assert _data(old) == data
    st = status(old)
    assert [v[0] for v in st.views] == [vf.name for vf in list_view_files(st.path or "plain")]
    assert st.views_pending == []
    before, book = _snapshot(old), _bookkeeping(old)
    assert str(book[2]).count("=r/") == 2  # the grants survived the view step (CREATE OR REPLACE)
    assert migrate(old, prefer=prefer) == []
    assert _snapshot(old) == before and _bookkeeping(old) == book and _data(old) == data


def test_upgrade_of_a_database_migrated_before_the_view_files(
    make_db: Callable[[], str], unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, fresh = make_db(), make_db()
    for dsn in (old, fresh):  # make_db's template is already migrated: start both from nothing
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
    _check_upgrade(old, fresh, unique_id, monkeypatch, "plain")


def test_every_view_and_function_is_in_the_view_files(db: str) -> None:
    text = "\n".join(vf.text for p in PATHS for vf in list_view_files(p))
    defined = set(re.findall(r"CREATE OR REPLACE (?:VIEW|FUNCTION) (\w+)", text))
    with psycopg.connect(db) as conn:
        names = {
            r[0]
            for r in conn.execute(
                "SELECT viewname FROM pg_views WHERE schemaname = 'public' UNION "
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
            )
        }
    assert names <= defined, f"views/functions defined only in numbered migrations: {sorted(names - defined)}"


def test_new_migrations_define_no_views_or_functions() -> None:
    for path in PATHS:
        for m in list_migrations(path):
            if m.version not in DEFINES_VIEWS:
                found = re.findall(r"(?im)^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:VIEW|FUNCTION)\s+\w+", m.text)
                assert not found, (
                    f"{m.version:04d}_{m.name}: views and functions go in parkpulse/db/views/ ({found})"
                )


@pytest.fixture
def ts_dbs() -> Iterator[Callable[[], str]]:
    assert TS_URL
    made: list[str] = []

    def make() -> str:
        name = f"pp_tsv_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        made.append(name)
        return server_dsn(TS_URL, name)

    yield make
    with psycopg.connect(TS_URL, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.timescale
@pytest.mark.skipif(not TS_URL, reason="PARKPULSE_TEST_TIMESCALE_URL is not set (no TimescaleDB here)")
def test_upgrade_on_real_timescaledb(
    ts_dbs: Callable[[], str], unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _check_upgrade(ts_dbs(), ts_dbs(), unique_id, monkeypatch, "timescale")
