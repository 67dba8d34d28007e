"""A synthetic park's load on the broker, and counting what the database stored (the `load` job
and the benchmark share these)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from parkpulse.errors import ParkPulseError
from parkpulse.registry import ParkFile
from parkpulse.settings import parse_mqtt_url
from parkpulse.synthetic import SyntheticGateway, synthetic_gateways

__all__ = ["IngestProcess", "LoadPlan", "StoredCounts", "count_stored", "plan_load", "publish", "wait_stored"]


@dataclass
class LoadPlan:
    """Payloads ready to publish: (topic, payload, readings) in publishing order."""

    messages: list[tuple[str, bytes, int]]
    readings: int
    gateways: list[str]
    last_seq: dict[str, int] = field(default_factory=dict)


def plan_load(pf: ParkFile, readings: int, per_message: int = 2000, t_end_ms: int | None = None) -> LoadPlan:
    """Split `readings` over the park's gateways, `per_message` per batch, timestamps in the past."""
    gws: list[SyntheticGateway] = list(synthetic_gateways(pf))
    per_instant = gws[0].readings_per_instant()
    per_message = max(per_instant, per_message - per_message % per_instant)
    n_msgs = max(1, -(-readings // per_message))
    instants_per_msg = per_message // per_instant
    msgs_per_gw = -(-n_msgs // len(gws))
    t_end = t_end_ms or int(time.time() * 1000) - 60_000
    t0 = t_end - msgs_per_gw * instants_per_msg * 1000
    out: list[tuple[str, bytes, int]] = []
    left = readings
    clock = {g.gateway: t0 for g in gws}
    last: dict[str, int] = {}
    i = 0
    while left > 0:
        g = gws[i % len(gws)]
        rows = min(per_message, left)
        out.append((g.topic, g.batch(clock[g.gateway], rows), rows))
        last[g.gateway] = g.seq - 1
        clock[g.gateway] += instants_per_msg * 1000
        left -= rows
        i += 1
    return LoadPlan(out, readings, [g.gateway for g in gws], last)


def publish(url: str, messages: list[tuple[str, bytes, int]], client_id: str = "pp-load", inflight: int = 200) -> float:
    """Publish at QoS 1 and wait for every PUBACK. Returns seconds taken."""
    t = parse_mqtt_url(url)
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if t.username:
        c.username_pw_set(t.username, t.password)
    c.max_inflight_messages_set(inflight)
    c.max_queued_messages_set(0)
    done = threading.Event()
    acked = [0]
    total = len(messages)

    def on_publish(client: mqtt.Client, userdata: object, mid: int, rc: object, props: object) -> None:
        acked[0] += 1
        if acked[0] >= total:
            done.set()

    c.on_publish = on_publish
    c.connect(t.host, t.port, keepalive=30)
    c.loop_start()
    try:
        t0 = time.perf_counter()
        for topic, payload, _ in messages:
            while len(c._out_messages) >= inflight * 4:  # keep paho's own queue short (memory)
                time.sleep(0.001)
            c.publish(topic, payload, qos=1)
        if not done.wait(600):
            raise ParkPulseError(f"publisher: only {acked[0]} of {total} messages acknowledged by the broker")
        return time.perf_counter() - t0
    finally:
        c.disconnect()
        c.loop_stop()


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
        pks = [r[0] for r in c.execute("SELECT device_pk FROM devices WHERE gateway_id = ANY(%s)", (gateways,))]
        n, d = c.execute(
            "SELECT count(*), count(DISTINCT (device_pk, metric_id, ts)) FROM readings WHERE device_pk = ANY(%s)", (pks,)
        ).fetchone() or (0, 0)
        q = lambda sql: int((c.execute(sql, (gateways,)).fetchone() or (0,))[0])  # noqa: E731
        return StoredCounts(
            readings=int(n), distinct=int(d),
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
            rows: dict[str, int] = dict(c.execute("SELECT gateway_id, contiguous_seq FROM gateway_seq WHERE gateway_id = ANY(%s)",
                                  (gws,)).fetchall())
            if all(rows.get(g, -1) >= s for g, s in last_seq.items()):
                return time.time()
            if time.monotonic() > deadline:
                raise ParkPulseError(f"not everything was stored within {timeout:.0f} s: {rows} vs {last_seq}")
            time.sleep(poll)


class IngestProcess:
    """`python -m ingest run` as a child process (what the load job, tests and the bench start)."""

    def __init__(self, database_url: str, mqtt_url: str, client_id: str, http_port: int, **env: Any) -> None:
        self.http_port = http_port
        self.env = dict(os.environ)
        self.env.update({
            "PARKPULSE_INGEST_DATABASE_URL": database_url,
            "PARKPULSE_INGEST_MQTT_URL": mqtt_url,
            "PARKPULSE_INGEST_CLIENT_ID": client_id,
            "PARKPULSE_INGEST_HTTP_PORT": str(http_port),
        })
        self.env.update({f"PARKPULSE_INGEST_{k.upper()}": str(v) for k, v in env.items()})
        # the repository root, so `-m ingest` resolves even where the editable install predates ingest/
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (root, self.env.get("PYTHONPATH")) if p)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: float = 30.0, log_path: str | None = None) -> IngestProcess:
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "ingest", "run"], env=self.env,
                                     stdout=out, stderr=subprocess.STDOUT if log_path else subprocess.DEVNULL)
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
