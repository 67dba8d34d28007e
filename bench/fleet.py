"""Fleet push benchmark, platform side: a config change for N gateways (default 500) goes through
the `fleet` library (validation with the gateway's own validator, the versioned store, NOTIFY) and
the publisher `parkpulse fleet serve` (a real subprocess, signing every push with Ed25519) to a
private Mosquitto, until a
subscriber standing in for the gateways holds every gateway's new retained config.

It measures the platform's side only: no gateway applies anything here (the gateways' apply time
is the gateway benchmark's). Baseline, measured in the same run: one paho client publishing the
same N retained payloads straight to the broker (no store, no validation) — the floor the
publisher's path is compared with. CPU of the publisher process and the broker from /proc.

    python bench/fleet.py [--gateways 500] [--rounds 3]

Last line: JSON {"gateways": n, "push_s_median": …, "baseline_s_median": …, "ratio": …, …}.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

import fleet
from parkpulse.db import migrate, server_dsn
from parkpulse.registry import import_registry
from parkpulse.services import MosquittoBroker
from parkpulse.synthetic import synthetic_park
from parkpulse.wire import config_payload, config_topic, generate_key_pair

ROOT = Path(__file__).resolve().parents[1]
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class Watcher:
    """Subscribes to every config topic of the park; counts gateways whose newest message carries `want`."""

    def __init__(self, port: int, park: str) -> None:
        self.versions: dict[str, int] = {}
        self.lock = threading.Lock()
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-watch-{os.getpid()}", protocol=mqtt.MQTTv5
        )
        self.c.on_message = self._msg
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(f"pp/v1/{park}/+/+/config", qos=1)
        self.c.loop_start()

    def _msg(self, c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        if not m.payload:
            return
        doc = orjson.loads(m.payload)
        with self.lock:
            self.versions[doc["gateway"]] = int(doc["version"])

    def wait_all(self, gateways: list[str], want: int, timeout: float = 300.0) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            with self.lock:
                if all(self.versions.get(g) == want for g in gateways):
                    return time.monotonic()
            time.sleep(0.005)
        raise TimeoutError(f"not every gateway got version {want} within {timeout} s")

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def gw_config(interval_s: float) -> dict[str, Any]:
    return {
        "buses": [{"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": 1502}],
        "devices": [
            {
                "id": f"m{i}",
                "bus": "lan",
                "device_id": i,
                "profile": "eastron-sdm630",
                "interval_s": interval_s,
            }
            for i in range(1, 11)
        ],
    }


def baseline(port: int, targets: list[tuple[str, str]], watcher: Watcher, version: int) -> float:
    """One paho client publishes the N retained payloads directly; seconds until the watcher holds all."""
    cfg = gw_config(1.0)
    payloads = [
        (t, config_payload(g, version, cfg, issued_by="bench", reason="baseline")) for g, t in targets
    ]
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-base-{os.getpid()}", protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        t0 = time.monotonic()
        for topic, body in payloads:
            c.publish(topic, body, qos=1, retain=True)
        return watcher.wait_all([g for g, _ in targets], version) - t0
    finally:
        c.disconnect()
        c.loop_stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateways", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--admin-dsn",
        default=os.environ.get("PARKPULSE_TEST_DATABASE_URL", "postgresql://127.0.0.1:5432/postgres"),
    )
    a = ap.parse_args()
    dbname = f"pp_bench_fleet_{os.getpid()}"
    dsn = server_dsn(a.admin_dsn, dbname)
    migrate(dsn, prefer="plain")
    park = f"bf{os.getpid()}"
    pf = synthetic_park(park, firms=a.gateways, gateways_per_firm=1, meters_per_gateway=1)
    broker = MosquittoBroker().start()
    watcher = Watcher(broker.port, park)
    serve: subprocess.Popen[bytes] | None = None
    keys: Path | None = None
    result: dict[str, Any] = {}
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            import_registry(conn, pf)
            targets = [(g.id, config_topic(park, f.id, g.id)) for f in pf.firms for g in f.gateways]
            gws = [g for g, _ in targets]
            keys = Path(tempfile.mkdtemp(prefix="pp-bench-fleet-"))
            generate_key_pair(keys / "fleet.key", keys / "fleet.pub")
            env = {
                **os.environ,
                "PARKPULSE_DATABASE_URL": dsn,
                "PARKPULSE_FLEET_MQTT_URL": broker.url,
                "PARKPULSE_FLEET_SIGNING_KEY": str(keys / "fleet.key"),
            }
            serve = subprocess.Popen(
                [sys.executable, "-c", "from fleet.cli import app; app()", "serve", "--log-level", "warning"],
                env=env,
                cwd=ROOT,
            )
            time.sleep(2.0)  # connected and listening (nothing to publish yet)
            push, write, base, serve_cpu, broker_cpu = [], [], [], [], []
            for r in range(a.rounds):
                version = r + 1  # the store numbers each gateway's versions 1, 2, …
                c0, b0 = cpu_s(serve.pid), cpu_s(broker.proc.pid)  # type: ignore[union-attr]
                t0 = time.monotonic()
                for g in gws:
                    fleet.set_desired(conn, g, gw_config(5.0 + r), by="bench", reason=f"round {r}")
                t_written = time.monotonic()
                t_all = watcher.wait_all(gws, version)
                push.append(t_all - t0)
                write.append(t_written - t0)
                serve_cpu.append(cpu_s(serve.pid) - c0)
                broker_cpu.append(cpu_s(broker.proc.pid) - b0)  # type: ignore[union-attr]
                base.append(baseline(broker.port, targets, watcher, 10_000 + r))
                print(
                    f"round {r + 1}: {len(gws)} gateways: written in {write[-1]:.2f} s, all retained after "
                    f"{push[-1]:.2f} s; publisher CPU {serve_cpu[-1]:.2f} s, broker CPU {broker_cpu[-1]:.2f} s; "
                    f"baseline (direct publish) {base[-1]:.2f} s",
                    flush=True,
                )
        med = statistics.median
        result = {
            "gateways": len(gws),
            "rounds": a.rounds,
            "push_s_median": round(med(push), 3),
            "write_s_median": round(med(write), 3),
            "baseline_s_median": round(med(base), 3),
            "ratio": round(med(push) / med(base), 2),
            "publisher_cpu_s_median": round(med(serve_cpu), 3),
            "broker_cpu_s_median": round(med(broker_cpu), 3),
        }
        print(
            f"median: {result['push_s_median']} s for {len(gws)} gateways through the store and the publisher "
            f"({result['write_s_median']} s of it writing and validating), {result['ratio']}× the direct publish "
            f"({result['baseline_s_median']} s)"
        )
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait(15)
        watcher.close()
        broker.close()
        if keys is not None:
            shutil.rmtree(keys, ignore_errors=True)
        with contextlib.suppress(Exception), psycopg.connect(a.admin_dsn, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
