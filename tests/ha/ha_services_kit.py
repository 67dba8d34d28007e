"""Real service processes for the HA tests of rules, alerts and the console: each is started as
`parkpulse …` on the multi-host URL, with its log in a file; plus an MQTT listener of the alert
events, CEMS minute data written the way ingest stores it, and a console prober that signs in
through the API and keeps asking pages and /api/v1 while the database fails over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from alerts import HJ212_FLAGS
from parkpulse.reconnect import retry_sync
from parkpulse.services import MosquittoBroker, free_port, wait_port
from parkpulse.wire import alerts_topic

__all__ = [
    "ConsoleProber",
    "EventListener",
    "Probe",
    "ServiceProcess",
    "cems_pk",
    "start_console",
    "write_cems_hour",
]

ROOT = Path(__file__).resolve().parents[2]


class ServiceProcess:
    """`python -m parkpulse.cli ARGS` with env on top of ours; SIGTERM on stop."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
        with self.log_path.open("wb") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "parkpulse.cli", *args],
                env=full,
                cwd=ROOT,
                stdout=logf,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


class EventListener:
    """Every message on pp/v1/{park}/alerts/events, decoded."""

    def __init__(self, broker: MosquittoBroker, park: str) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._sub = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ha-events-{park}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self._sub.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe(alerts_topic(park, "events"), qos=1)
        self.client.loop_start()
        if not self._sub.wait(10):
            raise AssertionError("the events subscription was not acknowledged")

    def _on_message(self, _c: object, _u: object, m: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.events.append(orjson.loads(m.payload))

    def fired(self, subject: str) -> list[int]:
        """event_ids of the 'fired' events published for alerts on `subject`."""
        with self._lock:
            return [
                int(e["event"]["event_id"])
                for e in self.events
                if e["event"]["action"] == "fired" and e["alert"]["subject"] == subject
            ]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def cems_pk(url: str, gateway: str) -> int:
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute(
            "SELECT device_pk FROM devices WHERE gateway_id = %s AND device_id = 'cems-1'", (gateway,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def write_cems_hour(url: str, pk: int, hour: datetime, nox: float, o2: float = 3.5) -> None:
    """60 valid minutes of one CEMS hour (NOx, SO2, O2, flag N) in one transaction, retried on a
    new connection while the cluster has no primary (the test writes like ingest would)."""

    def once() -> None:
        with psycopg.connect(url, connect_timeout=3) as c:
            ids = {r[0]: r[1] for r in c.execute("SELECT name, metric_id FROM metrics")}
            c.execute("SELECT pp_ensure_partition(%s)", (hour,))
            with c.cursor().copy("COPY readings (device_pk, metric_id, ts, value, quality) FROM STDIN") as cp:
                for i in range(60):
                    t = hour + timedelta(minutes=i)
                    for metric, v in (
                        ("nox_mg_m3", nox),
                        ("so2_mg_m3", 20.0),
                        ("o2_pct", o2),
                        ("cems_flag", float(HJ212_FLAGS["N"])),
                    ):
                        cp.write_row((pk, ids[metric], t, v, 0))

    retry_sync(once, what="test: CEMS hour", within_s=60)


@dataclass
class Probe:
    t: float  # when the answer came (monotonic)
    ok: bool
    what: str
    took_s: float


@dataclass
class ConsoleProber:
    """Signs in over /api/v1/session, then asks /alerts (page), /api/v1/alerts and /firms (page)
    in turn every `every_s` until stopped; keeps each answer's time and outcome."""

    base: str
    user: str
    password: str
    park: str
    every_s: float = 0.1
    probes: list[Probe] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def login(self) -> httpx.Client:
        client = httpx.Client(base_url=self.base, timeout=5.0)
        r = client.post("/api/v1/session", json={"user": self.user, "password": self.password})
        assert r.status_code == 200, r.text[:300]
        return client

    def start(self) -> ConsoleProber:
        client = self.login()
        self._thread = threading.Thread(target=self._run, args=(client,), daemon=True)
        self._thread.start()
        return self

    def _run(self, client: httpx.Client) -> None:
        paths = ["/alerts", f"/api/v1/alerts?park={self.park}", "/firms"]
        i = 0
        try:
            while not self._stop.is_set():
                path = paths[i % len(paths)]
                i += 1
                t0 = time.monotonic()
                try:
                    r = client.get(path)
                    ok, what = r.status_code == 200, f"{path} {r.status_code}"
                except httpx.HTTPError as exc:
                    ok, what = False, f"{path} {type(exc).__name__}"
                now = time.monotonic()
                self.probes.append(Probe(now, ok, what, now - t0))
                self._stop.wait(self.every_s)
        finally:
            client.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def failures_after(self, t0: float) -> list[Probe]:
        return [p for p in self.probes if p.t >= t0 and not p.ok]

    def unavailable_s(self, t0: float) -> float:
        """How long the console gave no good answer after t0: from the start of the first failed
        request to the first success after the last failure, or else the slowest request (a
        request that waited for the pool through the promotion)."""
        after_t0 = [p for p in self.probes if p.t >= t0]
        slowest = max((p.took_s for p in after_t0), default=0.0)
        bad = [p for p in after_t0 if not p.ok]
        if not bad:
            return slowest
        after = [p.t for p in self.probes if p.ok and p.t > bad[-1].t]
        return max(slowest, (after[0] if after else bad[-1].t) - (bad[0].t - bad[0].took_s))


def start_console(url: str, log_dir: Path) -> tuple[ServiceProcess, str]:
    port = free_port()
    proc = ServiceProcess(
        "console",
        ["console", "serve", "--host", "127.0.0.1", "--port", str(port)],
        {"PARKPULSE_DATABASE_URL": url, "PARKPULSE_CONSOLE_COOKIE_SECURE": "false"},
        log_dir,
    )
    if not wait_port("127.0.0.1", port, timeout=30):
        raise AssertionError(f"console did not start:\n{proc.log()[-2000:]}")
    return proc, f"http://127.0.0.1:{port}"
