"""Ingest as a child process, and what it stored: what the `parkpulse ingest load` job, the tests
and the benchmark start and wait for."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from parkpulse.errors import ParkPulseError

__all__ = ["IngestProcess", "StoredCounts", "count_stored", "wait_stored"]


@dataclass
class StoredCounts:
    readings: int
    distinct: int
    batches: int
    dead_letters: int
    seq_gaps: int
    data_gaps: int
    duplicate_rows: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def count_stored(dsn: str, gateways: list[str]) -> StoredCounts:
    with psycopg.connect(dsn, autocommit=True) as c:
        pks = [
            r[0] for r in c.execute("SELECT device_pk FROM devices WHERE gateway_id = ANY(%s)", (gateways,))
        ]
        n, d = c.execute(
            "SELECT count(*), count(DISTINCT (device_pk, metric_id, ts)) FROM readings WHERE device_pk = ANY(%s)",
            (pks,),
        ).fetchone() or (0, 0)

        def q(sql: str) -> int:
            return int((c.execute(sql, (gateways,)).fetchone() or (0,))[0])

        return StoredCounts(
            readings=int(n),
            distinct=int(d),
            batches=q("SELECT count(*) FROM ingest_batches WHERE gateway_id = ANY(%s)"),
            dead_letters=q("SELECT count(*) FROM dead_letters WHERE gateway_id = ANY(%s)"),
            seq_gaps=q("SELECT count(*) FROM seq_gaps WHERE gateway_id = ANY(%s) AND filled_at IS NULL"),
            data_gaps=q("SELECT count(*) FROM data_gaps WHERE gateway_id = ANY(%s)"),
            duplicate_rows=int(n) - int(d),
        )


def wait_stored(dsn: str, last_seq: dict[str, int], timeout: float = 600.0, poll: float = 0.05) -> float:
    """Wait until every gateway's contiguous watermark reaches its last published seq.
    Returns the time.time() at which it was seen."""
    deadline = time.monotonic() + timeout
    gws = sorted(last_seq)
    with psycopg.connect(dsn, autocommit=True) as c:
        while True:
            rows: dict[str, int] = dict(
                c.execute(
                    "SELECT gateway_id, contiguous_seq FROM gateway_seq WHERE gateway_id = ANY(%s)", (gws,)
                ).fetchall()
            )
            if all(rows.get(g, -1) >= s for g, s in last_seq.items()):
                return time.time()
            if time.monotonic() > deadline:
                raise ParkPulseError(
                    f"not everything was stored within {timeout:.0f} s: {rows} vs {last_seq}"
                )
            time.sleep(poll)


class IngestProcess:
    """`python -m ingest run` as a child process (what the load job, tests and the bench start)."""

    def __init__(self, database_url: str, mqtt_url: str, client_id: str, http_port: int, **env: Any) -> None:
        self.http_port = http_port
        self.env = dict(os.environ)
        self.env.update(
            {
                "PARKPULSE_INGEST_DATABASE_URL": database_url,
                "PARKPULSE_INGEST_MQTT_URL": mqtt_url,
                "PARKPULSE_INGEST_CLIENT_ID": client_id,
                "PARKPULSE_INGEST_HTTP_PORT": str(http_port),
            }
        )
        self.env.update({f"PARKPULSE_INGEST_{k.upper()}": str(v) for k, v in env.items()})
        # the repository root, so `-m ingest` resolves even where the editable install predates ingest/
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (root, self.env.get("PYTHONPATH")) if p)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: float = 30.0, log_path: str | None = None) -> IngestProcess:
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingest", "run"],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT if log_path else subprocess.DEVNULL,
        )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ParkPulseError(f"ingest exited at start with code {self.proc.returncode}")
            h = self.health()
            if h and h.get("subscribed"):
                return self
            time.sleep(0.1)
        raise ParkPulseError("ingest did not subscribe in time")

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1) as r:
                return dict(json.loads(r.read()))
        except (OSError, ValueError):
            return None

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=2) as r:
            return dict(_parse_metrics(r.read().decode()))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def _parse_metrics(text: str) -> Iterator[tuple[str, float]]:
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                yield name, float(value)
            except ValueError:
                continue
