"""Ingest benchmark: end-to-end readings/s (publisher process → private Mosquitto → ingest process →
PostgreSQL, until all committed and counted) against the ceiling of raw binary COPY into the same
`readings` table with its indexes, in fresh databases.

    python bench/ingest.py                    # 2,000,000 readings
    python bench/ingest.py --readings 200000  # quick

The last line is JSON: readings_per_s, copy_ceiling_per_s, ratio, ingest_rss_mb, lost, duplicates.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import psutil
import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ingest.harness import IngestProcess, count_stored, wait_stored  # noqa: E402
from ingest.loadgen import plan_load, publish  # noqa: E402
from parkpulse.db import connect, migrate, server_dsn  # noqa: E402
from parkpulse.registry import import_registry  # noqa: E402
from parkpulse.services import MosquittoBroker, free_port  # noqa: E402
from parkpulse.synthetic import synthetic_park  # noqa: E402

PARK = "bench"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fresh_db(admin: str) -> str:
    name = f"pp_bench_{uuid.uuid4().hex[:8]}"
    dsn = server_dsn(admin, name)
    migrate(dsn, prefer="plain")
    return dsn


def drop_db(admin: str, dsn: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def publisher_main(url: str, readings: int, per_message: int, firms: int, meters: int) -> None:
    """Child process: build every payload first, then wait for 'go' on stdin and publish."""
    pf = synthetic_park(PARK, firms=firms, meters_per_gateway=meters)
    plan = plan_load(pf, readings, per_message)
    print(json.dumps({"ready": True, "last_seq": plan.last_seq, "messages": len(plan.messages)}), flush=True)
    sys.stdin.readline()
    secs = publish(url, plan.messages, client_id="pp-bench-publisher")
    print(json.dumps({"published_s": secs}), flush=True)


def copy_ceiling(
    dsn: str,
    rows: int,
    chunk: int,
    pks: list[int],
    mids: list[int],
    write_row: bool = False,
    key_order: bool = False,
) -> float:
    """Raw binary COPY of `rows` readings (same shape as ingest's) into `readings`, `chunk` per transaction;
    in arrival order (time, then device and metric), or sorted by the index key within each chunk."""
    t0 = datetime.now(UTC) - timedelta(days=2)
    per = len(pks) * len(mids)
    pre = [struct.pack(">hiiihi", 5, 4, pk, 2, mid, 8) for pk in pks for mid in mids]
    tail = struct.Struct(">qidih").pack
    base_us = int((t0 - datetime(2000, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT pp_ensure_partition(%s)", (t0,))
        conn.execute("SELECT pp_ensure_partition(%s)", (t0 + timedelta(seconds=rows // per + 1),))
        conn.commit()
        # build the whole stream first: the ceiling measures the database, not Python
        bufs: list[bytes] = []
        tuples: list[list[tuple[int, int, datetime, float, int]]] = []
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            if write_row:
                tuples.append(
                    [
                        (
                            pks[(i % per) // len(mids)],
                            mids[i % len(mids)],
                            t0 + timedelta(seconds=i // per),
                            float(i % 1000),
                            0,
                        )
                        for i in range(start, start + n)
                    ]
                )
            else:
                order: Sequence[int] = range(start, start + n)
                if key_order:
                    order = sorted(order, key=lambda i: (i % per, i))
                b = bytearray()
                for i in order:
                    b += pre[i % per] + tail(base_us + (i // per) * 1_000_000, 8, float(i % 1000), 2, 0)
                bufs.append(bytes(b))
        t = time.perf_counter()
        with conn.cursor() as cur:
            if write_row:
                for chunk_rows in tuples:
                    with cur.copy(
                        "COPY readings (device_pk, metric_id, ts, value, quality) FROM STDIN (FORMAT BINARY)"
                    ) as cp:
                        cp.set_types(["int4", "int2", "timestamptz", "float8", "int2"])
                        for r in chunk_rows:
                            cp.write_row(r)
                    conn.commit()
            else:
                for chunk_bytes in bufs:
                    with cur.copy(
                        "COPY readings (device_pk, metric_id, ts, value, quality) FROM STDIN (FORMAT BINARY)"
                    ) as cp:
                        cp.write(
                            b"PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00"
                            + chunk_bytes
                            + b"\xff\xff"
                        )
                    conn.commit()
        secs = time.perf_counter() - t
        (n,) = conn.execute("SELECT count(*) FROM readings").fetchone() or (0,)
        assert n == rows, (n, rows)
    return rows / secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readings", type=int, default=2_000_000)
    ap.add_argument("--per-message", type=int, default=2000)
    ap.add_argument("--firms", type=int, default=10)
    ap.add_argument("--meters", type=int, default=10)
    ap.add_argument(
        "--admin-url",
        default=os.environ.get("PARKPULSE_TEST_DATABASE_URL", "postgresql://127.0.0.1:5432/postgres"),
    )
    ap.add_argument("--chunk", type=int, default=60_000, help="rows per transaction of the raw COPY ceiling")
    ap.add_argument(
        "--compare-write-row", action="store_true", help="also time psycopg write_row COPY (info line)"
    )
    ap.add_argument("--publisher", nargs=1, metavar="URL", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.publisher:
        publisher_main(a.publisher[0], a.readings, a.per_message, a.firms, a.meters)
        return

    admin = a.admin_url
    dsn = fresh_db(admin)
    dsn2 = fresh_db(admin)
    broker = MosquittoBroker().start()
    proc: IngestProcess | None = None
    pub: subprocess.Popen[str] | None = None
    try:
        pf = synthetic_park(PARK, firms=a.firms, meters_per_gateway=a.meters)
        for d in (dsn, dsn2):
            with connect(d) as conn:
                import_registry(conn, pf)
        gateways = [g.id for f in pf.firms for g in f.gateways]
        proc = IngestProcess(dsn, broker.url, "pp-bench-ingest", free_port(), rollup_interval_s=0)
        proc.start(log_path=os.environ.get("PP_BENCH_INGEST_LOG"))
        assert proc.proc is not None
        ps = psutil.Process(proc.proc.pid)
        pub = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--publisher",
                broker.url,
                "--readings",
                str(a.readings),
                "--per-message",
                str(a.per_message),
                "--firms",
                str(a.firms),
                "--meters",
                str(a.meters),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert pub.stdin and pub.stdout
        ready = json.loads(pub.stdout.readline())
        last_seq = {k: int(v) for k, v in ready["last_seq"].items()}
        rss_max = [ps.memory_info().rss]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.1):
                try:
                    rss_max[0] = max(rss_max[0], ps.memory_info().rss)
                except psutil.Error:
                    return

        sampler = threading.Thread(target=sample, name="bench-rss", daemon=True)
        sampler.start()
        _log(f"publishing {a.readings:,} readings in {ready['messages']:,} messages …")
        cpu0 = sum(ps.cpu_times()[:2])
        t0 = time.time()
        pub.stdin.write("go\n")
        pub.stdin.flush()
        t_end = wait_stored(dsn, last_seq, timeout=max(300.0, a.readings / 5000), poll=0.02)
        cpu = sum(ps.cpu_times()[:2]) - cpu0
        stop.set()
        sampler.join()
        secs = t_end - t0
        published = json.loads(pub.stdout.readline())
        pub.wait(30)
        counts = count_stored(dsn, gateways)
        metrics = proc.metrics()
        rate = counts.readings / secs
        _log(
            f"end to end: {counts.readings:,} readings in {secs:.2f} s = {rate:,.0f}/s "
            f"(publisher done after {published['published_s']:.2f} s); counts {counts.as_dict()}"
        )
        _log(
            f"ingest: commit latency mean {metrics.get('pp_ingest_commit_seconds_sum', 0) / max(1, metrics.get('pp_ingest_commit_seconds_count', 1)):.3f} s "
            f"over {metrics.get('pp_ingest_commit_seconds_count', 0):.0f} transactions; max RSS {rss_max[0] / 2**20:.0f} MB; "
            f"ingest CPU {cpu:.2f} s ({cpu / counts.readings * 1e6:.2f} µs/reading)"
        )
        proc.stop()
        proc = None
        with connect(dsn2) as conn:
            pks = [r[0] for r in conn.execute("SELECT device_pk FROM devices ORDER BY 1")]
            mids = [r[0] for r in conn.execute("SELECT metric_id FROM metrics ORDER BY 1")][:20]
        arrival = copy_ceiling(dsn2, a.readings, a.chunk, pks, mids)
        _log(
            f"raw binary COPY into readings (fresh database, {a.chunk:,} rows per transaction, arrival order): "
            f"{arrival:,.0f} rows/s"
        )
        drop_db(admin, dsn2)
        dsn2 = fresh_db(admin)
        with connect(dsn2) as conn:
            import_registry(conn, pf)
        keyed = copy_ceiling(dsn2, a.readings, a.chunk, pks, mids, key_order=True)
        _log(f"raw binary COPY, each transaction sorted by the index key: {keyed:,.0f} rows/s")
        ceiling = max(arrival, keyed)  # the ceiling is the better of the two
        if a.compare_write_row:
            drop_db(admin, dsn2)
            dsn2 = fresh_db(admin)
            with connect(dsn2) as conn:
                import_registry(conn, pf)
            wr = copy_ceiling(dsn2, min(a.readings, 500_000), 60_000, pks, mids, write_row=True)
            _log(f"psycopg write_row binary COPY (tuples prebuilt): {wr:,.0f} rows/s")
        lost = a.readings - counts.distinct
        result = {
            "readings_per_s": round(rate),
            "copy_ceiling_per_s": round(ceiling),
            "ratio": round(rate / ceiling, 3),
            "ingest_rss_mb": round(rss_max[0] / 2**20, 1),
            "lost": lost,
            "duplicates": counts.duplicate_rows,
        }
        print(json.dumps(result), flush=True)
    finally:
        if pub is not None and pub.poll() is None:
            pub.kill()
            pub.wait()
        if proc is not None:
            proc.stop()
        broker.close()
        drop_db(admin, dsn)
        drop_db(admin, dsn2)


if __name__ == "__main__":
    main()
