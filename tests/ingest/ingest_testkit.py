"""Helpers and fixtures of the ingest tests (conftest.py re-exports the fixtures): a registered
synthetic park and ingest processes (real
subprocesses of `python -m ingest run`) against the real PostgreSQL and a real Mosquitto."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ingest.harness import IngestProcess
from ingest.loadgen import publish
from parkpulse.db import connect
from parkpulse.registry import ParkFile, import_registry
from parkpulse.services import free_port
from parkpulse.synthetic import SyntheticGateway, synthetic_gateways, synthetic_park

FAST = {
    "flush_interval_s": 0.05,
    "cache_miss_refresh_s": 0,
    "rollup_interval_s": 0,
    "reconnect_max_s": 2,
    "db_retry_max_s": 1,
}


@dataclass
class Park:
    pf: ParkFile
    gateways: list[SyntheticGateway]

    @property
    def gateway_ids(self) -> list[str]:
        return [g.gateway for g in self.gateways]


@pytest.fixture
def park(db: str, unique_id: str) -> Park:
    pf = synthetic_park(unique_id, firms=2, meters_per_gateway=3)
    with connect(db) as conn:
        import_registry(conn, pf)
    return Park(pf, list(synthetic_gateways(pf)))


@pytest.fixture
def start_ingest(db: str, tmp_path: Path, unique_id: str) -> Iterator[Callable[..., IngestProcess]]:
    """Factory: start an ingest process (database `db` unless given) on a broker URL."""
    procs: list[IngestProcess] = []

    def start(
        mqtt_url: str, client: str = "a", database_url: str | None = None, **settings: Any
    ) -> IngestProcess:
        opts = {**FAST, "park": unique_id, **settings}
        p = IngestProcess(database_url or db, mqtt_url, f"pp-test-{unique_id}-{client}", free_port(), **opts)
        p.start(log_path=str(tmp_path / f"ingest-{client}.log"))
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop(timeout=10)


def send(url: str, msgs: list[tuple[str, bytes]]) -> None:
    publish(url, [(t, p, 0) for t, p in msgs], client_id=f"pp-test-pub-{time.monotonic_ns()}")


def q1(dsn: str, sql: str, *args: Any) -> Any:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute(sql, args).fetchone()
        return row[0] if row else None


def wait_for(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {v!r})")
        time.sleep(0.05)


def readings_of(dsn: str, park: Park) -> tuple[int, int]:
    """(rows, distinct keys) stored for the park's devices."""
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute(
            """SELECT count(*), count(DISTINCT (r.device_pk, r.metric_id, r.ts)) FROM readings r
               JOIN devices d USING (device_pk) WHERE d.gateway_id = ANY(%s)""",
            (park.gateway_ids,),
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])
