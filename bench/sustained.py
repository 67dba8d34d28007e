"""Sustained ingest with the rollups kept current (issue 16): publishes at fixed rates through a real
private Mosquitto into real ingest processes whose rollup refresher runs, and watches the rollup
lag (how long the oldest dirty-bucket mark has waited: `parkpulse.db.rollup_lag`) while it does.

Case 1, live: 1-second data from 2,000 devices × 20 metrics (40,000 readings per simulated
second). A rate above 40 k/s runs the simulated clock faster than the wall clock (the data keeps
its shape: 900 readings per series and 15-minute bucket); the clock starts far enough in the past
that no reading is stamped in the future. Case 2, backfill: 15-minute data of the same devices,
days in the past, at a fixed rate. Before the rates, the same run measures the raw ingest ceiling
with this data shape (publisher unpaced, payloads built beforehand, refresher off): the baseline
the rates are compared with. Every rate gets a fresh database.

Per rate it prints the lag over time, whether it stayed bounded (every sample under --bound-s and
the dirty log worked off within --bound-s of the last publish), the ingest and PostgreSQL CPU
(psutil: the ingest processes, and the server backends of the bench database), and at the end
the highest bounded rate of each case. The last line is JSON.

    python -m bench.sustained                                # defaults: about 10 minutes
    python -m bench.sustained --rates 40000,80000 --seconds 240 --backfill-rates 40000
    python -m bench.sustained --refresher-sql old.sql        # the same with another pp_refresh_rollups
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psutil
import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ingest.harness import IngestProcess, wait_stored  # noqa: E402
from parkpulse.db import connect, migrate, rollup_lag, server_dsn  # noqa: E402
from parkpulse.registry import import_registry  # noqa: E402
from parkpulse.services import MosquittoBroker, free_port  # noqa: E402
from parkpulse.synthetic import synthetic_gateways, synthetic_park  # noqa: E402

PARK = "sus"
NOMINAL = 40_000  # 2,000 devices × 20 metrics, one reading a second
LIVE_STEP_MS = 1_000
BACKFILL_STEP_MS = 900_000


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the publisher (a child process) -------------------------------------------------------------
def _payloads(firms: int, meters: int, t0_ms: int, step_ms: int, instants: int, ipm: int) -> Any:
    """Yield (topic, payload, readings) round by round: one message per gateway per round, each
    holding `ipm` instants of all its devices × metrics."""
    gws = list(synthetic_gateways(synthetic_park(PARK, firms=firms, meters_per_gateway=meters)))
    for start in range(0, instants, ipm):
        n = min(ipm, instants - start)
        for g in gws:
            rows = n * g.readings_per_instant()
            yield g.topic, g.batch(t0_ms + start * step_ms, rows, step_ms=step_ms), rows, g


def publisher_main(a: argparse.Namespace) -> None:
    """Publish `instants` instants at `rate` readings/s (0: as fast as possible, payloads built
    first); print the last seq of each gateway and what was published, as JSON lines."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from parkpulse.settings import parse_mqtt_url

    t = parse_mqtt_url(a.url)
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"pp-sus-{uuid.uuid4().hex[:6]}"
    )
    c.max_inflight_messages_set(200)
    c.max_queued_messages_set(0)
    c.connect(t.host, t.port, keepalive=30)
    c.loop_start()
    gen = _payloads(a.firms, a.meters, a.t0_ms, a.step_ms, a.instants, a.ipm)
    msgs = list(gen) if a.rate == 0 else gen
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    sent = 0
    last: dict[str, int] = {}
    t0 = time.perf_counter()
    for topic, payload, rows, g in msgs:
        if a.rate:
            lag = sent / a.rate - (time.perf_counter() - t0)
            if lag > 0:
                time.sleep(lag)
        while len(c._out_messages) >= 800:  # keep paho's queue short
            time.sleep(0.001)
        c.publish(topic, payload, qos=1)
        sent += rows
        last[g.gateway] = g.seq - 1
    while c._out_messages:
        time.sleep(0.01)
    secs = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    print(json.dumps({"published": sent, "seconds": secs, "last_seq": last}), flush=True)


# -- CPU of the processes ------------------------------------------------------------------------
@dataclass
class CpuMeter:
    """CPU seconds of the ingest processes and of the PostgreSQL backends serving `dbname`
    (sampled each second: a backend that exits loses at most its last second)."""

    dsn: str
    ingest_pids: list[int]
    seen: dict[int, float] = field(default_factory=dict)
    base: dict[int, float] = field(default_factory=dict)
    ingest_s: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)

    def _cpu(self, pid: int) -> float | None:
        try:
            ct = psutil.Process(pid).cpu_times()
            return float(ct.user + ct.system)
        except psutil.Error:
            return None

    def _sample(self, conn: psycopg.Connection) -> None:
        pids = [
            r[0]
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
        for pid in pids:
            v = self._cpu(pid)
            if v is not None:
                self.base.setdefault(pid, v)
                self.seen[pid] = v

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            start = {p: self._cpu(p) or 0.0 for p in self.ingest_pids}
            while not self.stop.wait(1.0):
                self._sample(conn)
                self.ingest_s = sum((self._cpu(p) or 0.0) - start[p] for p in self.ingest_pids)

    @property
    def pg_s(self) -> float:
        return sum(self.seen[p] - self.base[p] for p in self.seen)


# -- one run at one rate -------------------------------------------------------------------------
@dataclass
class RunResult:
    case: str
    target_rate: float
    achieved_rate: float
    stored: int
    lag_samples: list[tuple[float, float]]  # (seconds since start, oldest mark age s)
    max_lag_s: float
    drain_s: float | None  # after the last publish, until nothing was dirty (None: not within bound)
    bounded: bool
    ingest_cpu: float  # cores (CPU seconds / wall seconds)
    pg_cpu: float
    refresh_rounds: float
    buckets_refreshed: float


def fresh_db(admin: str, refresher_sql: str | None) -> str:
    dsn = server_dsn(admin, f"pp_sus_{uuid.uuid4().hex[:8]}")
    migrate(dsn, prefer="plain")
    if refresher_sql:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(refresher_sql.encode())
    return dsn


def drop_db(admin: str, dsn: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _start_publisher(
    a: argparse.Namespace, url: str, rate: float, step_ms: int, instants: int, t0_ms: int
) -> Any:
    args = [sys.executable, os.path.abspath(__file__), "--publisher", "--url", url, "--rate", str(rate)]
    args += [
        "--step-ms",
        str(step_ms),
        "--instants",
        str(instants),
        "--t0-ms",
        str(t0_ms),
        "--ipm",
        str(a.ipm),
    ]
    args += ["--firms", str(a.firms), "--meters", str(a.meters)]
    pub = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert pub.stdin and pub.stdout
    json.loads(pub.stdout.readline())
    return pub


def _metric(procs: list[IngestProcess], prefix: str) -> float:
    total = 0.0
    for p in procs:
        try:
            got = p.metrics()
        except OSError:
            continue
        total += sum(v for k, v in got.items() if k.startswith(prefix) and not k.endswith("_created"))
    return total


def _watch_lag(dsn: str, pub: Any, every: float, t0: float) -> list[tuple[float, float]]:
    samples: list[tuple[float, float]] = []
    with psycopg.connect(dsn, autocommit=True) as c:
        while pub.poll() is None:
            lag = rollup_lag(c)
            samples.append((time.monotonic() - t0, lag.oldest_mark_age_s or 0.0))
            _log(
                f"    t={samples[-1][0]:6.0f} s  lag {samples[-1][1]:6.1f} s  dirty buckets {lag.dirty_buckets}"
            )
            time.sleep(every)
    return samples


def _wait_drained(dsn: str, bound: float) -> float | None:
    t = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as c:
        while time.monotonic() - t < bound:
            if rollup_lag(c).dirty_buckets == 0:
                return time.monotonic() - t
            time.sleep(1.0)
    return None


def _session_env() -> dict[str, Any]:
    """A shared-subscription group of its own per run, and short sessions: a stopped ingest's
    session keeps its group membership on the broker, which would keep taking a share."""
    return {"group": f"sus{uuid.uuid4().hex[:8]}", "session_expiry_s": 60}


def run_rate(
    a: argparse.Namespace, broker: MosquittoBroker, case: str, rate: float, seconds: float
) -> RunResult:
    """One fresh database, `ingest` processes with the refresher, the publisher paced at `rate`."""
    step = LIVE_STEP_MS if case == "live" else BACKFILL_STEP_MS
    per_instant = a.firms * a.meters * 20
    instants = max(a.ipm, int(rate * seconds / per_instant))
    now_ms = int(time.time() * 1000)
    # live: the simulated clock ends a minute before now; backfill: two days before the registration
    t0_ms = now_ms - 60_000 - instants * step if case == "live" else now_ms - 2 * 86_400_000 - instants * step
    dsn = fresh_db(a.admin_url, a.refresher_sql_text)
    procs: list[IngestProcess] = []
    pub = None
    try:
        with connect(dsn) as conn:
            import_registry(conn, synthetic_park(PARK, firms=a.firms, meters_per_gateway=a.meters))
            conn.commit()
        env = {
            "rollup_interval_s": a.rollup_interval_s,
            "history_before_registration_days": 400,
            **_session_env(),
        }
        for i in range(a.ingest):
            procs.append(IngestProcess(dsn, broker.url, f"pp-sus-ingest-{i}", free_port(), **env).start())
        pub = _start_publisher(a, broker.url, rate, step, instants, t0_ms)
        meter = CpuMeter(dsn, [p.proc.pid for p in procs if p.proc])
        th = threading.Thread(target=meter.run, name="bench-cpu", daemon=True)
        th.start()
        t0 = time.monotonic()
        assert pub.stdin and pub.stdout
        pub.stdin.write("go\n")
        pub.stdin.flush()
        samples = _watch_lag(dsn, pub, a.sample_s, t0)
        done = json.loads(pub.stdout.readline())
        _log(
            f"    published {done['published']:,} readings in {done['seconds']:.1f} s; waiting until stored …"
        )
        wait_stored(dsn, {k: int(v) for k, v in done["last_seq"].items()}, timeout=600)
        stored_s = time.monotonic() - t0
        drain = _wait_drained(dsn, a.bound_s)
        wall = time.monotonic() - t0
        meter.stop.set()
        th.join()
        max_lag = max((s[1] for s in samples), default=0.0)
        return RunResult(
            case=case,
            target_rate=rate,
            achieved_rate=done["published"] / max(done["seconds"], stored_s - a.sample_s),
            stored=done["published"],
            lag_samples=samples,
            max_lag_s=max_lag,
            drain_s=drain,
            bounded=max_lag < a.bound_s and drain is not None,
            ingest_cpu=meter.ingest_s / wall,
            pg_cpu=meter.pg_s / wall,
            refresh_rounds=_metric(procs, "pp_ingest_rollup_refreshes"),
            buckets_refreshed=_metric(procs, "pp_ingest_rollup_buckets_refreshed"),
        )
    finally:
        if pub is not None and pub.poll() is None:
            pub.kill()
            pub.wait()
        for p in procs:
            p.stop()
        drop_db(a.admin_url, dsn)


def ceiling(a: argparse.Namespace, broker: MosquittoBroker) -> float:
    """Raw ingest with this data shape: unpaced publisher (payloads built first), no refresher."""
    per_instant = a.firms * a.meters * 20
    instants = max(a.ipm, a.ceiling_readings // per_instant)
    dsn = fresh_db(a.admin_url, None)
    proc: IngestProcess | None = None
    pub = None
    try:
        with connect(dsn) as conn:
            import_registry(conn, synthetic_park(PARK, firms=a.firms, meters_per_gateway=a.meters))
            conn.commit()
        proc = IngestProcess(
            dsn, broker.url, "pp-sus-ceiling", free_port(), rollup_interval_s=0, **_session_env()
        )
        proc.start()
        t0_ms = int(time.time() * 1000) - 120_000 - instants * LIVE_STEP_MS
        pub = _start_publisher(a, broker.url, 0, LIVE_STEP_MS, instants, t0_ms)
        assert pub.stdin and pub.stdout
        t0 = time.monotonic()
        pub.stdin.write("go\n")
        pub.stdin.flush()
        done = json.loads(pub.stdout.readline())
        wait_stored(dsn, {k: int(v) for k, v in done["last_seq"].items()}, timeout=600, poll=0.02)
        return float(done["published"]) / (time.monotonic() - t0)
    finally:
        if pub is not None and pub.poll() is None:
            pub.kill()
            pub.wait()
        if proc is not None:
            proc.stop()
        drop_db(a.admin_url, dsn)


def _rates(spec: str, ceil: float) -> list[float]:
    """'40000,0.5c' → [40000, half the ceiling]; ascending."""
    out = []
    for part in spec.split(","):
        p = part.strip()
        if not p:
            continue
        out.append(float(p[:-1]) * ceil if p.endswith("c") else float(p))
    return sorted(out)


def _report(r: RunResult, ceil: float) -> None:
    lags = [s[1] for s in r.lag_samples]
    med = statistics.median(lags) if lags else 0.0
    drain = f"in {r.drain_s:.0f} s" if r.drain_s is not None else "NOT within the bound"
    _log(
        f"  {r.case} {r.target_rate:,.0f}/s (achieved {r.achieved_rate:,.0f}/s = {r.achieved_rate / ceil:.2f} × raw): "
        f"lag median {med:.0f} s, max {r.max_lag_s:.0f} s, dirty log worked off {drain} after the last reading was stored → "
        f"{'BOUNDED' if r.bounded else 'NOT bounded'}; CPU ingest {r.ingest_cpu:.2f}, PostgreSQL {r.pg_cpu:.2f} cores; "
        f"{r.refresh_rounds:.0f} refresh runs, {r.buckets_refreshed:.0f} buckets"
    )


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--rates", default="40000,0.5c", help="case 1 rates, readings/s; 'Nc' = N × the raw ceiling"
    )
    ap.add_argument("--seconds", type=float, default=180.0, help="publishing time per case-1 rate")
    ap.add_argument("--backfill-rates", default="0.5c", help="case 2 rates (15-minute data), as --rates")
    ap.add_argument("--backfill-seconds", type=float, default=90.0)
    ap.add_argument("--ceiling-readings", type=int, default=2_000_000)
    ap.add_argument("--ingest", type=int, default=1, help="ingest processes (shared subscription)")
    ap.add_argument("--rollup-interval-s", type=float, default=30.0, help="ingest's refresher period")
    ap.add_argument("--bound-s", type=float, default=120.0, help="the lag bound")
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--ipm", type=int, default=5, help="instants per message (a gateway's batch)")
    ap.add_argument("--firms", type=int, default=200)
    ap.add_argument("--meters", type=int, default=10, help="devices per firm (one gateway each)")
    ap.add_argument(
        "--refresher-sql", help="SQL run in each database after migrate (another refresher, to compare)"
    )
    ap.add_argument(
        "--admin-url",
        default=os.environ.get("PARKPULSE_TEST_DATABASE_URL", "postgresql://127.0.0.1:5432/postgres"),
    )
    ap.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--step-ms", type=int, default=LIVE_STEP_MS, help=argparse.SUPPRESS)
    ap.add_argument("--instants", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--t0-ms", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.refresher_sql_text = open(a.refresher_sql).read() if a.refresher_sql else None  # noqa: SIM115
    return a


def main() -> None:
    a = _parse()
    if a.publisher:
        publisher_main(a)
        return
    broker = MosquittoBroker().start()
    try:
        _log(f"raw ingest ceiling: {a.ceiling_readings:,} readings of 1-second data, refresher off …")
        ceil = ceiling(a, broker)
        _log(f"  raw ingest: {ceil:,.0f} readings/s")
        results: list[RunResult] = []
        for case, spec, secs in (
            ("live", a.rates, a.seconds),
            ("backfill", a.backfill_rates, a.backfill_seconds),
        ):
            for rate in _rates(spec, ceil):
                _log(
                    f"{case}: {rate:,.0f} readings/s for {secs:.0f} s, refresher every {a.rollup_interval_s:.0f} s …"
                )
                r = run_rate(a, broker, case, rate, secs)
                _report(r, ceil)
                results.append(r)
    finally:
        broker.close()
    summary: dict[str, Any] = {"raw_ingest_per_s": round(ceil)}
    for case in ("live", "backfill"):
        ok = [r.achieved_rate for r in results if r.case == case and r.bounded]
        best = max(ok, default=0.0)
        summary[f"{case}_bounded_rate_per_s"] = round(best)
        summary[f"{case}_bounded_ratio_to_raw"] = round(best / ceil, 3)
        summary[f"{case}_runs"] = [
            {
                "rate": round(r.achieved_rate),
                "max_lag_s": round(r.max_lag_s, 1),
                "median_lag_s": round(statistics.median([s[1] for s in r.lag_samples] or [0.0]), 1),
                "drain_s": None if r.drain_s is None else round(r.drain_s, 1),
                "bounded": r.bounded,
                "ingest_cpu": round(r.ingest_cpu, 2),
                "pg_cpu": round(r.pg_cpu, 2),
            }
            for r in results
            if r.case == case
        ]
    _log(
        f"highest bounded rate: live {summary['live_bounded_rate_per_s']:,}/s "
        f"({summary['live_bounded_ratio_to_raw']} × raw), backfill {summary['backfill_bounded_rate_per_s']:,}/s"
    )
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
