"""The cost of synchronous replication in ingest throughput, on a real Patroni cluster.

One etcd and two Patroni-managed PostgreSQL 15 clusters on this machine (parkpulse/patroni_local.py),
a private Mosquitto, one ingest process on the multi-host URL
(`target_session_attrs=read-write`). The same load (a fresh synthetic park per run, so every
batch is new) is published and ingested with Patroni's `synchronous_mode` off (asynchronous
streaming: a commit returns once it is on the primary's disk) and on (`synchronous_commit = on`
with the replica as the synchronous standby: a commit also waits for the replica's flush), runs
alternating so both modes see the same machine. Readings/s = readings ÷ (last commit − first
publish).

Printed: every run, the median of each mode, and the ratio sync ÷ async. Last line: JSON.

    python bench/ha_sync_cost.py [--readings 400000] [--runs 3]

Needs the Debian packages patroni and etcd-server (./run setup installs them).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.harness import IngestProcess, count_stored, wait_stored  # noqa: E402
from ingest.loadgen import plan_load, publish  # noqa: E402
from parkpulse.db import connect, migrate  # noqa: E402
from parkpulse.patroni_local import PatroniCluster  # noqa: E402
from parkpulse.registry import ParkFile, import_registry  # noqa: E402
from parkpulse.services import MosquittoBroker, free_port  # noqa: E402
from parkpulse.synthetic import synthetic_park  # noqa: E402


def _register(url: str, park: str) -> ParkFile:
    pf = synthetic_park(park, firms=8, meters_per_gateway=10)
    with connect(url) as conn:
        import_registry(conn, pf)
    return pf


def _one_run(url: str, broker_url: str, pf: ParkFile, readings: int) -> tuple[float, int]:
    """Publish `readings` for a park not used before and wait until all is committed;
    (readings/s, stored)."""
    park = pf.park.id
    plan = plan_load(pf, readings, per_message=2000)
    t0 = time.time()
    publish(broker_url, plan.messages, client_id=f"pp-bench-ha-{park}")
    t_end = wait_stored(url, plan.last_seq, timeout=600)
    got = count_stored(url, plan.gateways)
    if got.readings != readings or got.duplicate_rows:
        raise SystemExit(
            f"run {park}: stored {got.readings} readings ({got.duplicate_rows} doubled) of {readings}"
        )
    return readings / (t_end - t0), got.readings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readings", type=int, default=400_000, help="readings per run")
    ap.add_argument("--runs", type=int, default=3, help="runs per mode (alternating)")
    args = ap.parse_args(argv)
    # SIGTERM (a timeout, Ctrl-C in a wrapper) must still stop the cluster, broker and ingest
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    rates: dict[str, list[float]] = {"async": [], "sync": []}
    uid = "hb" + uuid.uuid4().hex[:8]
    with PatroniCluster() as cluster, MosquittoBroker() as broker:
        url = cluster.multi_host_url("parkpulse_bench")
        migrate(url, prefer="plain")
        # every run's park is registered before ingest starts (its registry cache is then warm)
        parks = {
            key: _register(url, f"{uid}{key}")
            for key in ["w"] + [f"{m}{i}" for i in range(args.runs) for m in "as"]
        }
        ingest = IngestProcess(url, broker.url, f"pp-bench-ha-{uid}", free_port(), rollup_interval_s=0)
        ingest.start(log_path=os.environ.get("PP_BENCH_INGEST_LOG", os.devnull))
        try:
            # warm-up (first partitions, caches), not counted
            _one_run(url, broker.url, parks["w"], min(args.readings, 100_000))
            for i in range(args.runs):
                for mode in ("async", "sync") if i % 2 == 0 else ("sync", "async"):
                    cluster.set_synchronous_mode(mode == "sync")
                    rate, _ = _one_run(url, broker.url, parks[f"{mode[0]}{i}"], args.readings)
                    rates[mode].append(rate)
                    print(f"run {i + 1} {mode:>5}: {rate:>10,.0f} readings/s", flush=True)
        finally:
            ingest.stop()
    med = {m: statistics.median(v) for m, v in rates.items()}
    ratio = med["sync"] / med["async"]
    print(f"median asynchronous replication: {med['async']:,.0f} readings/s")
    print(f"median synchronous replication:  {med['sync']:,.0f} readings/s")
    print(f"ratio sync / async: {ratio:.3f}  (cost of synchronous mode: {100 * (1 - ratio):.1f} %)")
    print(
        json.dumps(
            {
                "async_readings_per_s": round(med["async"]),
                "sync_readings_per_s": round(med["sync"]),
                "ratio_sync_to_async": round(ratio, 3),
                "async_runs": [round(r) for r in rates["async"]],
                "sync_runs": [round(r) for r in rates["sync"]],
                "readings_per_run": args.readings,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
