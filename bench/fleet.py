"""Fleet push benchmark: a config change for N gateways (default 500), platform side, then until
every gateway has applied it.

Part 1, platform side: the change goes through the `fleet` library (validation with the gateway's
own validator, the versioned store, NOTIFY) and the publisher `parkpulse fleet serve` (a real
subprocess, signing every push with Ed25519) to a private Mosquitto, until a subscriber standing
in for the gateways holds every gateway's new retained config. Baseline, measured in the same
run: one paho client publishing the same N retained payloads straight to the broker (no store,
no validation, no signature) — the floor the publisher's path is compared with.

Part 2, applied: N real gateway runtimes (`gateway.runtime.Gateway` in managed mode, no devices,
each with its own spool, state folder and MQTT connection to the same Mosquitto), spread over
`--gateway-procs` worker processes, one event loop each. A change (the batching age, so every
gateway verifies, validates, writes, applies and reports a new version) is stored for all N
through the same library and publisher; the clock runs from the first write until a subscriber
on the gateways' retained status topics has seen every gateway report the new version
`applied`. Reported: time until all applied (median and worst of the rounds), each gateway's
push-to-applied latency (median and p95 over every gateway of every round), and CPU per apply
of the broker, the publisher and the gateway processes (gross, and net of the gateways' idle
CPU measured just before each round). Ratio: all-applied median over the direct-publish baseline.
CPU from /proc.

    python bench/fleet.py [--gateways 500] [--rounds 3] [--gateway-procs 4]

Last line: JSON {"gateways": n, "push_s_median": …, "baseline_s_median": …, "ratio": …,
"apply_all_s_median": …, "apply_latency_p95_s": …, "apply_ratio": …, …}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

import fleet
from parkpulse.db import migrate, server_dsn
from parkpulse.registry import ParkFile, import_registry
from parkpulse.services import MosquittoBroker
from parkpulse.synthetic import synthetic_park
from parkpulse.wire import config_payload, config_topic, generate_key_pair

ROOT = Path(__file__).resolve().parents[1]
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class Watcher:
    """Subscribes to topic filters; keeps, per gateway, the value `pick` finds in its newest message
    and when it first had each value (monotonic clock of this process)."""

    def __init__(self, port: int, filters: list[str], pick: Any, name: str) -> None:
        self.values: dict[str, Any] = {}
        self.first_seen: dict[tuple[str, Any], float] = {}
        self.pick = pick
        self.lock = threading.Lock()
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-{name}-{os.getpid()}", protocol=mqtt.MQTTv5
        )
        self.c.on_message = self._msg
        self.c.connect("127.0.0.1", port)
        for f in filters:
            self.c.subscribe(f, qos=1)
        self.c.loop_start()

    def _msg(self, c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        if not m.payload:
            return
        doc = orjson.loads(m.payload)
        value = self.pick(doc)
        now = time.monotonic()
        with self.lock:
            self.values[doc["gateway"]] = value
            self.first_seen.setdefault((doc["gateway"], value), now)

    def wait_all(self, gateways: list[str], want: Any, timeout: float = 300.0) -> float:
        """Until every gateway's newest value is `want`; the monotonic time it was reached."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            with self.lock:
                if all(self.values.get(g) == want for g in gateways):
                    return time.monotonic()
            time.sleep(0.005)
        with self.lock:
            behind = [g for g in gateways if self.values.get(g) != want]
        raise TimeoutError(f"{len(behind)} gateways not at {want!r} within {timeout} s, e.g. {behind[:3]}")

    def latencies(self, gateways: list[str], want: Any, since: float) -> list[float]:
        with self.lock:
            return [self.first_seen[(g, want)] - since for g in gateways]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def config_version(doc: dict[str, Any]) -> int:
    return int(doc["version"])


def applied_version(doc: dict[str, Any]) -> int | None:
    """The version a gateway's status says it runs, when its state is `applied`."""
    cfg = doc.get("config") or {}
    return cfg.get("applied_version") if cfg.get("state") == "applied" else None


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


def apply_config(round_no: int) -> dict[str, Any]:
    """Part 2's managed config: no devices; each round changes the batching age."""
    return {"batching": {"max_readings": 2000, "max_age_s": 1.0 + 0.5 * round_no}, "devices": []}


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


# --- part 2's gateway processes -------------------------------------------------------------


def worker_main(spec_path: Path) -> int:
    """A worker process: the gateways of its spec, one event loop, until SIGTERM."""
    from gateway.config import parse_config
    from gateway.runtime import Gateway

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    docs = orjson.loads(spec_path.read_bytes())

    async def run_all() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        gws = [Gateway(parse_config(d, f"bench gateway {i}"), shutdown=stop) for i, d in enumerate(docs)]
        await asyncio.gather(*(g.run() for g in gws))

    asyncio.run(run_all())
    return 0


def local_file(pf: ParkFile, firm: str, gw: str, broker_url: str, folder: Path, pub: Path) -> dict[str, Any]:
    """A managed gateway's local file: identity, uplink, spool, managed; no devices of its own."""
    return {
        "gateway": {"park": pf.park.id, "firm": firm, "id": gw},
        "uplink": {"url": broker_url, "status_interval_s": 300, "reconnect_min_s": 1, "reconnect_max_s": 5},
        "spool": {"path": str(folder / "spool" / f"{gw}.db")},
        "http": {"listen": None},
        "log_level": "WARNING",
        "managed": {
            "verify_key": str(pub),
            "state_dir": str(folder / "state" / gw),
            "rollback_after_s": 3600,
        },
    }


@dataclass
class Fleet:
    """Part 2's worker processes."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, docs: list[dict[str, Any]], n_procs: int, folder: Path) -> None:
        (folder / "spool").mkdir(parents=True, exist_ok=True)
        for i in range(n_procs):
            spec = folder / f"worker-{i}.json"
            spec.write_bytes(orjson.dumps(docs[i::n_procs]))
            self.procs.append(subprocess.Popen([sys.executable, __file__, "--worker", str(spec)], cwd=ROOT))

    def cpu(self) -> float:
        return sum(cpu_s(p.pid) for p in self.procs)

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# --- the two parts ------------------------------------------------------------------------------


@dataclass
class Bench:
    """What both parts share: the store, the broker, the publisher, the key pair."""

    dsn: str
    broker: MosquittoBroker
    keys: Path
    serve: subprocess.Popen[bytes] | None = None

    def start_publisher(self) -> None:
        env = {
            **os.environ,
            "PARKPULSE_DATABASE_URL": self.dsn,
            "PARKPULSE_FLEET_MQTT_URL": self.broker.url,
            "PARKPULSE_FLEET_SIGNING_KEY": str(self.keys / "fleet.key"),
        }
        self.serve = subprocess.Popen(
            [sys.executable, "-c", "from fleet.cli import app; app()", "serve", "--log-level", "warning"],
            env=env,
            cwd=ROOT,
        )
        time.sleep(2.0)  # connected and listening (nothing to publish yet)

    @property
    def serve_pid(self) -> int:
        assert self.serve is not None
        return self.serve.pid

    @property
    def broker_pid(self) -> int:
        assert self.broker.proc is not None
        return self.broker.proc.pid

    def push(self, conn: psycopg.Connection, gws: list[str], config: dict[str, Any], reason: str) -> float:
        """Store `config` as every gateway's next version; the seconds it took."""
        t0 = time.monotonic()
        for g in gws:
            fleet.set_desired(conn, g, config, by="bench", reason=reason)
        return time.monotonic() - t0


def part_platform(bench: Bench, conn: psycopg.Connection, pf: ParkFile, rounds: int) -> dict[str, Any]:
    """Part 1: store → publisher → retained on the broker, against the direct publish."""
    park = pf.park.id
    targets = [(g.id, config_topic(park, f.id, g.id)) for f in pf.firms for g in f.gateways]
    gws = [g for g, _ in targets]
    watcher = Watcher(bench.broker.port, [f"pp/v1/{park}/+/+/config"], config_version, "cfg")
    push, write, base, serve_cpu, broker_cpu = [], [], [], [], []
    try:
        for r in range(rounds):
            version = r + 1  # the store numbers each gateway's versions 1, 2, …
            c0, b0 = cpu_s(bench.serve_pid), cpu_s(bench.broker_pid)
            t0 = time.monotonic()
            write.append(bench.push(conn, gws, gw_config(5.0 + r), f"round {r}"))
            push.append(watcher.wait_all(gws, version) - t0)
            serve_cpu.append(cpu_s(bench.serve_pid) - c0)
            broker_cpu.append(cpu_s(bench.broker_pid) - b0)
            base.append(baseline(bench.broker.port, targets, watcher, 10_000 + r))
            print(
                f"round {r + 1}: {len(gws)} gateways: written in {write[-1]:.2f} s, all retained after "
                f"{push[-1]:.2f} s; publisher CPU {serve_cpu[-1]:.2f} s, broker CPU {broker_cpu[-1]:.2f} s; "
                f"baseline (direct publish) {base[-1]:.2f} s",
                flush=True,
            )
    finally:
        watcher.close()
    med = statistics.median
    out = {
        "gateways": len(gws),
        "rounds": rounds,
        "push_s_median": round(med(push), 3),
        "write_s_median": round(med(write), 3),
        "baseline_s_median": round(med(base), 3),
        "ratio": round(med(push) / med(base), 2),
        "publisher_cpu_s_median": round(med(serve_cpu), 3),
        "broker_cpu_s_median": round(med(broker_cpu), 3),
    }
    print(
        f"platform side, median: {out['push_s_median']} s for {len(gws)} gateways through the store and the "
        f"publisher ({out['write_s_median']} s of it writing and validating), {out['ratio']}× the direct "
        f"publish ({out['baseline_s_median']} s)",
        flush=True,
    )
    return out


@dataclass
class ApplyRound:
    all_applied_s: float
    all_retained_s: float
    write_s: float
    latencies: list[float]
    serve_cpu: float
    broker_cpu: float
    gw_cpu: float
    gw_idle_cpu: float


def _apply_round(
    bench: Bench,
    conn: psycopg.Connection,
    gws: list[str],
    fl: Fleet,
    r: int,
    watchers: tuple[Watcher, Watcher],
) -> ApplyRound:
    cfg_w, status_w = watchers
    version = r + 2  # version 1 is the one every gateway applied at start
    i0 = fl.cpu()
    time.sleep(3.0)
    idle_rate = (fl.cpu() - i0) / 3.0
    c0, b0, g0 = cpu_s(bench.serve_pid), cpu_s(bench.broker_pid), fl.cpu()
    t0 = time.monotonic()
    write = bench.push(conn, gws, apply_config(r + 1), f"apply round {r}")
    t_ret = cfg_w.wait_all(gws, version)
    t_all = status_w.wait_all(gws, version)
    gw_cpu = fl.cpu() - g0
    return ApplyRound(
        all_applied_s=t_all - t0,
        all_retained_s=t_ret - t0,
        write_s=write,
        latencies=status_w.latencies(gws, version, t0),
        serve_cpu=cpu_s(bench.serve_pid) - c0,
        broker_cpu=cpu_s(bench.broker_pid) - b0,
        gw_cpu=gw_cpu,
        gw_idle_cpu=idle_rate * (t_all - t0),
    )


def part_applied(
    bench: Bench, conn: psycopg.Connection, pf: ParkFile, rounds: int, n_procs: int, folder: Path
) -> dict[str, Any]:
    """Part 2: N real managed gateways; push until every one reports the new version applied."""
    park = pf.park.id
    pairs = [(f.id, g.id) for f in pf.firms for g in f.gateways]
    gws = [g for _, g in pairs]
    bench.push(conn, gws, apply_config(0), "version 1")
    cfg_w = Watcher(bench.broker.port, [f"pp/v1/{park}/+/+/config"], config_version, "cfg2")
    status_w = Watcher(bench.broker.port, [f"pp/v1/{park}/+/+/status"], applied_version, "status")
    fl = Fleet()
    try:
        cfg_w.wait_all(gws, 1)
        docs = [local_file(pf, f, g, bench.broker.url, folder, bench.keys / "fleet.pub") for f, g in pairs]
        t0 = time.monotonic()
        fl.start(docs, n_procs, folder)
        cold = status_w.wait_all(gws, 1, timeout=600) - t0
        print(
            f"{len(gws)} managed gateways in {n_procs} processes: connected and applied version 1 "
            f"{cold:.1f} s after start",
            flush=True,
        )
        results = []
        for r in range(rounds):
            res = _apply_round(bench, conn, gws, fl, r, (cfg_w, status_w))
            if not fl.alive():
                raise RuntimeError("a gateway worker process stopped")
            results.append(res)
            n = len(gws)
            print(
                f"apply round {r + 1}: written {res.write_s:.2f} s, all retained {res.all_retained_s:.2f} s, "
                f"all {n} applied {res.all_applied_s:.2f} s (per gateway median "
                f"{statistics.median(res.latencies):.2f} s, p95 {pct(res.latencies, 0.95):.2f} s); CPU per "
                f"apply: broker {1000 * res.broker_cpu / n:.2f} ms, publisher {1000 * res.serve_cpu / n:.2f} ms, "
                f"gateways {1000 * res.gw_cpu / n:.2f} ms gross, "
                f"{1000 * max(0.0, res.gw_cpu - res.gw_idle_cpu) / n:.2f} ms net of idle",
                flush=True,
            )
    finally:
        fl.stop()
        cfg_w.close()
        status_w.close()
    return _apply_summary(results, len(gws), n_procs, cold)


def _apply_summary(results: list[ApplyRound], n: int, n_procs: int, cold: float) -> dict[str, Any]:
    med = statistics.median
    lat = [x for r in results for x in r.latencies]
    return {
        "gateway_procs": n_procs,
        "cold_start_applied_s": round(cold, 2),
        "apply_all_s_median": round(med(r.all_applied_s for r in results), 3),
        "apply_all_s_max": round(max(r.all_applied_s for r in results), 3),
        "apply_retained_s_median": round(med(r.all_retained_s for r in results), 3),
        "apply_latency_median_s": round(med(lat), 3),
        "apply_latency_p95_s": round(pct(lat, 0.95), 3),
        "broker_cpu_ms_per_apply": round(1000 * med(r.broker_cpu for r in results) / n, 3),
        "publisher_cpu_ms_per_apply": round(1000 * med(r.serve_cpu for r in results) / n, 3),
        "gateway_cpu_ms_per_apply": round(1000 * med(r.gw_cpu for r in results) / n, 3),
        "gateway_cpu_ms_per_apply_net": round(
            1000 * med(max(0.0, r.gw_cpu - r.gw_idle_cpu) for r in results) / n, 3
        ),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--gateways", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gateway-procs", type=int, default=4, help="worker processes of part 2's gateways")
    ap.add_argument("--skip-apply", action="store_true", help="part 1 only (no gateways)")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument(
        "--admin-dsn",
        default=os.environ.get("PARKPULSE_TEST_DATABASE_URL", "postgresql://127.0.0.1:5432/postgres"),
    )
    a = ap.parse_args()
    if a.worker is not None:
        return worker_main(a.worker)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the broker inherits it: N+ connections
    dbname = f"pp_bench_fleet_{os.getpid()}"
    dsn = server_dsn(a.admin_dsn, dbname)
    migrate(dsn, prefer="plain")
    park = f"bf{os.getpid()}"
    platform_park = synthetic_park(park, firms=a.gateways, gateways_per_firm=1, meters_per_gateway=1)
    apply_park = synthetic_park(f"{park}g", firms=a.gateways, gateways_per_firm=1, meters_per_gateway=1)
    folder = Path(tempfile.mkdtemp(prefix="pp-bench-fleet-"))
    generate_key_pair(folder / "fleet.key", folder / "fleet.pub")
    bench = Bench(dsn, MosquittoBroker().start(), folder)
    result: dict[str, Any] = {}
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            import_registry(conn, platform_park)
            import_registry(conn, apply_park)
            bench.start_publisher()
            result = part_platform(bench, conn, platform_park, a.rounds)
            if not a.skip_apply:
                applied = part_applied(bench, conn, apply_park, a.rounds, a.gateway_procs, folder)
                applied["apply_ratio"] = round(applied["apply_all_s_median"] / result["baseline_s_median"], 2)
                result |= applied
                print(
                    f"applied, median: all {a.gateways} gateways applied the change {applied['apply_all_s_median']} s "
                    f"after the first write (p95 per gateway {applied['apply_latency_p95_s']} s), "
                    f"{applied['apply_ratio']}× the direct publish ({result['baseline_s_median']} s); CPU per apply: "
                    f"broker {applied['broker_cpu_ms_per_apply']} ms, publisher {applied['publisher_cpu_ms_per_apply']} ms, "
                    f"gateway {applied['gateway_cpu_ms_per_apply']} ms ({applied['gateway_cpu_ms_per_apply_net']} ms net)"
                )
    finally:
        if bench.serve is not None:
            bench.serve.terminate()
            bench.serve.wait(15)
        bench.broker.close()
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(Exception), psycopg.connect(a.admin_dsn, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
