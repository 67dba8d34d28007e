"""Reading from a streaming replica (issue 16): PARKPULSE_DATABASE_READ_URL, read-only sessions,
and the replica lag in the store health.

A real primary and a real streaming replica are made for this module: a throwaway cluster
(initdb + pg_ctl of PostgreSQL 15, in a temporary directory, on free ports) and a copy of it
by pg_basebackup -R. Both are stopped and removed at the end. Skipped, with the reason, only
when the PostgreSQL 15 server binaries are not installed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from parkpulse.db import (
    connect,
    connect_read,
    migrate,
    read_dsn,
    read_only_conninfo,
    refresh_rollups,
    store_health,
)
from parkpulse.registry import import_registry
from parkpulse.services import free_port
from parkpulse.settings import Settings, describe_settings_error
from parkpulse.synthetic import synthetic_park, write_readings
from rules._ruleset import load_rule_set
from rules._service import run_once

BIN = Path("/usr/lib/postgresql/15/bin")
T0 = datetime(2026, 1, 5, tzinfo=UTC)


@dataclass
class Pair:
    primary: str  # DSN of the parkpulse database on the primary
    replica: str  # the same database on the replica


def _run(args: list[str], user: str | None) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=120, user=user)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    if not (BIN / "initdb").exists() or not (BIN / "pg_basebackup").exists():
        pytest.skip(f"PostgreSQL 15 server binaries not found in {BIN} (initdb, pg_ctl, pg_basebackup)")
    user = "postgres" if os.geteuid() == 0 else None  # initdb refuses to run as root
    root = Path(tempfile.mkdtemp(prefix="pp_replica_"))
    if user:
        pw = pwd.getpwnam(user)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    prim, repl = root / "primary", root / "replica"
    p_port, r_port = free_port(), free_port()
    started: list[Path] = []
    try:
        _run([str(BIN / "initdb"), "-D", str(prim), "-A", "trust", "-U", "postgres", "--no-sync"], user)
        with (prim / "postgresql.conf").open("a") as f:
            f.write(
                f"port = {p_port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{root}'\n"
                "fsync = off\nwal_level = replica\nmax_wal_senders = 4\ncluster_name = 'pp_primary'\n"
            )
        _run([str(BIN / "pg_ctl"), "-D", str(prim), "-l", str(root / "primary.log"), "-w", "start"], user)
        started.append(prim)
        _run(
            [
                str(BIN / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(p_port),
                "-U",
                "postgres",
                "-D",
                str(repl),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
            user,
        )
        with (repl / "postgresql.conf").open("a") as f:
            f.write(f"port = {r_port}\ncluster_name = 'pp_replica'\nhot_standby = on\n")
        _run([str(BIN / "pg_ctl"), "-D", str(repl), "-l", str(root / "replica.log"), "-w", "start"], user)
        started.append(repl)
        primary = f"postgresql://postgres@127.0.0.1:{p_port}/parkpulse"
        migrate(primary, prefer="plain")
        yield Pair(primary, f"postgresql://postgres@127.0.0.1:{r_port}/parkpulse")
    finally:
        for d in reversed(started):
            subprocess.run(
                [str(BIN / "pg_ctl"), "-D", str(d), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
                user=user,
            )
        shutil.rmtree(root, ignore_errors=True)


def _wait_replayed(pair: Pair, timeout: float = 20.0) -> None:
    with connect(pair.primary, autocommit=True) as p:
        row = p.execute("SELECT pg_current_wal_lsn()").fetchone()
    assert row is not None
    deadline = time.monotonic() + timeout
    with connect_read(pair.replica) as r:
        while time.monotonic() < deadline:
            got = r.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (row[0],)).fetchone()
            if got and got[0]:
                return
            time.sleep(0.05)
    raise AssertionError(f"replica did not replay up to {row[0]} within {timeout} s")


def test_views_read_from_the_replica_equal_the_primary(pair: Pair) -> None:
    with connect(pair.primary) as conn:
        import_registry(conn, synthetic_park("repl", firms=2, meters_per_gateway=2))
        pks = [r[0] for r in conn.execute("SELECT device_pk FROM devices ORDER BY 1")]
        write_readings(
            conn, [(pk, 1, T0 + timedelta(hours=h), 10.0 * h + pk, 0) for pk in pks for h in range(72)]
        )
        assert refresh_rollups(conn) > 0
    _wait_replayed(pair)
    query = "SELECT firm_id, day, quantity FROM v_firm_energy_daily ORDER BY 1, 2"
    with connect(pair.primary) as p, connect_read(read_dsn(pair.replica, pair.primary)) as r:
        on_primary, on_replica = p.execute(query).fetchall(), r.execute(query).fetchall()
        in_recovery = r.execute("SELECT pg_is_in_recovery()").fetchone()
    assert in_recovery == (True,)  # it really is the replica answering
    assert on_replica == on_primary and len(on_primary) == 2 * 4  # 2 firms × 4 local days


def test_rules_run_reads_its_inputs_from_the_replica(pair: Pair) -> None:
    """The input queries go to the replica (after it replayed the refresh); results to the primary."""
    with connect(pair.primary) as conn:
        import_registry(conn, synthetic_park("rulesrepl", firms=1, meters_per_gateway=1))
        (pk,) = conn.execute(
            "SELECT device_pk FROM v_devices WHERE firm_id LIKE 'rulesrepl%'"
        ).fetchone() or (0,)
        write_readings(conn, [(pk, 1, T0 + timedelta(hours=h), 100.0 * h, 0) for h in range(48)])
    rs = load_rule_set()
    query = "SELECT energy_tce FROM firm_kpi_results WHERE run_id = %s AND firm_id LIKE 'rulesrepl%%'"
    results = []
    for read_url in (pair.replica, None):  # a run replaces the previous one's rows: read each at once
        run_id, n = run_once(pair.primary, rs, T0.year, read_url=read_url)  # refreshes, then reads
        with connect(pair.primary) as conn:
            results.append(conn.execute(query, (run_id,)).fetchall())
    assert n >= 1 and results[0] == results[1]
    assert results[0][0][0] > 0  # the refresh reached the replica before its inputs were read


@pytest.mark.parametrize("where", ["replica", "primary"])
def test_writes_never_go_through_a_read_connection(pair: Pair, where: str) -> None:
    dsn = pair.replica if where == "replica" else pair.primary  # the primary: no read URL configured
    with connect_read(dsn) as r, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        r.execute("INSERT INTO rollup_dirty (bucket) VALUES (now())")


def test_store_health_reports_the_replica_lag_under_load(pair: Pair) -> None:
    with connect(pair.primary, autocommit=True) as p, connect_read(pair.replica) as r:
        h = store_health(p, r)
        assert [(s.name, s.state) for s in h.standbys] == [("pp_replica", "streaming")]
        assert h.read_replica is not None and h.read_replica.in_recovery
        # hold the replica's replay, as a long query or a slow disk would, while the primary writes
        with connect(pair.replica, autocommit=True) as admin:
            admin.execute("SELECT pg_wal_replay_pause()")
            try:
                for i in range(5):
                    p.execute(
                        "INSERT INTO rollup_dirty (bucket) SELECT now() - make_interval(mins => g) "
                        "FROM generate_series(1, 2000) g"
                    )
                    time.sleep(0.3 if i else 0)
                time.sleep(0.5)
                held = store_health(p, r)
            finally:
                admin.execute("SELECT pg_wal_replay_resume()")
        p.execute("DELETE FROM rollup_dirty")
    assert held.read_replica is not None
    assert held.read_replica.replay_lag_bytes and held.read_replica.replay_lag_bytes > 0
    assert held.read_replica.replay_lag_s is not None and held.read_replica.replay_lag_s >= 1.0
    assert held.standbys[0].replay_lag_bytes and held.standbys[0].replay_lag_bytes > 0
    d = held.as_dict()
    assert d["read_replica"]["replay_lag_bytes"] > 0  # type: ignore[index]
    assert d["standbys"][0]["name"] == "pp_replica"  # type: ignore[index]
    _wait_replayed(pair)
    with connect(pair.primary, autocommit=True) as p, connect_read(pair.replica) as r:
        caught_up = store_health(p, r).read_replica
    assert caught_up is not None and caught_up.replay_lag_s == 0 and caught_up.replay_lag_bytes == 0


def test_store_health_without_a_replica_reports_none(db: str) -> None:
    with connect(db, autocommit=True) as p:
        h = store_health(p)
    assert h.read_replica is None and h.as_dict()["read_replica"] is None
    assert isinstance(h.as_dict()["standbys"], list)


def test_read_url_falls_back_to_the_primary() -> None:
    s = Settings(database_url="postgresql://127.0.0.1:5432/pp", _env_file=None)  # type: ignore[call-arg]
    assert s.read_url == "postgresql://127.0.0.1:5432/pp"
    s = Settings(database_url="postgresql://p/pp", database_read_url=" postgresql://r/pp ", _env_file=None)  # type: ignore[call-arg]
    assert s.read_url == "postgresql://r/pp"
    assert read_dsn("", "postgresql://p/pp") == "postgresql://p/pp"
    assert read_dsn(None, "postgresql://p/pp") == "postgresql://p/pp"
    assert "default_transaction_read_only=on" in read_only_conninfo("postgresql://r/pp")


def test_a_bad_read_url_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARKPULSE_DATABASE_READ_URL", "postgresql://ro:s3cret@[::1/pp")
    with pytest.raises(Exception) as info:
        Settings(_env_file=None)  # type: ignore[call-arg]
    msg = describe_settings_error(info.value, "PARKPULSE_")  # type: ignore[arg-type]
    assert msg.startswith("PARKPULSE_DATABASE_READ_URL: not a PostgreSQL URL or DSN")
    assert "s3cret" not in msg


def test_ingest_exports_each_standby_lag_in_its_metrics(pair: Pair) -> None:
    """The refresher round of ingest also reads pg_stat_replication into /metrics (per standby)."""
    from ingest.service import IngestService
    from ingest.settings import IngestSettings

    svc = IngestService(IngestSettings(database_url=pair.primary, _env_file=None))  # type: ignore[call-arg]
    svc._refresh_rollups()
    text = svc.metrics.text().decode()
    assert 'pp_store_replica_replay_lag_seconds{standby="pp_replica"}' in text
    assert 'pp_store_replica_replay_lag_bytes{standby="pp_replica"}' in text


def test_reports_read_from_the_replica(pair: Pair, tmp_path: Path) -> None:
    """Report generation is read-only work: with PARKPULSE_DATABASE_READ_URL set it runs on the
    replica alone (the primary URL here points at a closed port)."""
    with connect(pair.primary) as conn:
        import_registry(conn, synthetic_park("rrep", firms=1, meters_per_gateway=1))
        conn.commit()
        (firm,) = conn.execute("SELECT firm_id FROM firms WHERE park_id = 'rrep'").fetchone()  # type: ignore[misc]
    _wait_replayed(pair)
    out = tmp_path / "r.xlsx"
    env = {
        **os.environ,
        "PARKPULSE_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/parkpulse",
        "PARKPULSE_DATABASE_READ_URL": pair.replica,
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "parkpulse.cli",
            "report",
            "firm",
            "--firm",
            firm,
            "--month",
            "2026-11",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert out.stat().st_size > 1000
