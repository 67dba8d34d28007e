"""Bytes per reading on TimescaleDB, before and after the compression policy compresses a chunk.

Needs a TimescaleDB server: PARKPULSE_TEST_TIMESCALE_URL (or --url). Makes a database of its own
(timescale path, the project's migrations), writes one-minute readings of a three-phase meter's 20
catalogue metrics for `--meters` meters over `--days` days ending 20 days ago (so every chunk is
older than the 14-day compression horizon), values shaped like a meter's (counters rising with the
load, gauges around their nominal value, three decimals as meters report), then compresses the
chunks as the policy would and reads `chunk_compression_stats`. The figure docs/scaling.md section
3 needs; the ratio is against the same chunks uncompressed, measured in the same run. Last line JSON.

    python -m bench.timescale_compression [--url URL] [--meters 10] [--days 7]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from parkpulse.db import migrate, server_dsn
from parkpulse.registry import import_registry
from parkpulse.synthetic import METER_METRICS, ReadingRow, synthetic_park, write_readings

# (nominal value, relative noise) of the gauges; counters rise by the load
_GAUGES = {
    "active_power_kw": (120.0, 0.15),
    "reactive_power_kvar": (35.0, 0.2),
    "power_factor": (0.96, 0.01),
    "voltage_l1_v": (230.0, 0.01),
    "voltage_l2_v": (230.0, 0.01),
    "voltage_l3_v": (230.0, 0.01),
    "current_l1_a": (180.0, 0.15),
    "current_l2_a": (180.0, 0.15),
    "current_l3_a": (180.0, 0.15),
    "frequency_hz": (50.0, 0.0005),
    "temperature_c": (28.0, 0.05),
    "humidity_pct": (55.0, 0.05),
    "pressure_kpa": (101.3, 0.002),
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _meter_rows(pk: int, ids: dict[str, int], start: datetime, minutes: int, seed: int) -> list[ReadingRow]:
    rnd = random.Random(seed)
    counters = dict.fromkeys((m for m in METER_METRICS if m not in _GAUGES), 1000.0 * seed)
    rows: list[ReadingRow] = []
    for i in range(minutes):
        ts = start + timedelta(minutes=i)
        load = 0.6 + 0.4 * math.sin(i / 1440 * 2 * math.pi)  # a daily shape
        for m, (nominal, noise) in _GAUGES.items():
            v = nominal * (load if m.endswith(("_kw", "_kvar", "_a")) else 1.0)
            rows.append((pk, ids[m], ts, round(v * (1 + rnd.gauss(0, noise)), 3), 0))
        for m in counters:
            counters[m] += 120.0 * load / 60 * (1.0 if m == "elec_import_kwh" else 0.05)
            rows.append((pk, ids[m], ts, round(counters[m], 2), 0))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=os.environ.get("PARKPULSE_TEST_TIMESCALE_URL"))
    ap.add_argument("--meters", type=int, default=10)
    ap.add_argument("--days", type=int, default=7)
    a = ap.parse_args()
    if not a.url:
        print("set PARKPULSE_TEST_TIMESCALE_URL or --url to a TimescaleDB server", file=sys.stderr)
        return 2
    name = f"pp_bench_tsc_{uuid.uuid4().hex[:6]}"
    dsn = server_dsn(a.url, name)
    try:
        migrate(dsn, prefer="timescale")
        with psycopg.connect(dsn) as conn:
            import_registry(conn, synthetic_park("bench", firms=1, meters_per_gateway=a.meters))
            conn.commit()
            pks = [r[0] for r in conn.execute("SELECT device_pk FROM devices ORDER BY 1")][: a.meters]
            ids: dict[str, int] = {
                str(k): int(v) for k, v in conn.execute("SELECT name, metric_id FROM metrics")
            }
            start = (datetime.now(UTC) - timedelta(days=20 + a.days)).replace(second=0, microsecond=0)
            n = 0
            for i, pk in enumerate(pks):
                rows = _meter_rows(pk, ids, start, a.days * 1440, seed=i + 1)
                write_readings(conn, rows)
                n += len(rows)
            conn.commit()
            conn.execute("ANALYZE readings")
            before = conn.execute("SELECT sum(total_bytes) FROM chunks_detailed_size('readings')").fetchone()
            conn.execute(
                "SELECT compress_chunk(c, if_not_compressed => true) "
                "FROM show_chunks('readings', older_than => now() - interval '14 days') c"
            )
            conn.commit()
            stats = conn.execute(
                "SELECT sum(before_compression_total_bytes), sum(after_compression_total_bytes), "
                "count(*) FILTER (WHERE compression_status = 'Compressed'), count(*) "
                "FROM chunk_compression_stats('readings')"
            ).fetchone()
        assert before is not None and stats is not None
        b_before, b_after = float(stats[0] or before[0]), float(stats[1] or 0)
        per_before, per_after = b_before / n, b_after / n
        _log(f"readings: {n:,} ({a.meters} meters x 20 metrics x {a.days} days, one a minute)")
        _log(f"chunks compressed: {stats[2]} of {stats[3]}")
        _log(f"bytes per reading uncompressed (heap + indexes): {per_before:.1f}")
        _log(f"bytes per reading compressed: {per_after:.2f}  (ratio {b_before / b_after:.1f}x)")
        print(
            json.dumps(
                {
                    "readings": n,
                    "uncompressed_bytes_per_reading": round(per_before, 1),
                    "compressed_bytes_per_reading": round(per_after, 2),
                    "compression_ratio": round(b_before / b_after, 1),
                }
            ),
            flush=True,
        )
    finally:
        with psycopg.connect(server_dsn(a.url, "postgres"), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
