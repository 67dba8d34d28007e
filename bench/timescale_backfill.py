"""Late data into compressed TimescaleDB chunks: how much slower than into uncompressed ones.

Needs a TimescaleDB server: PARKPULSE_TEST_TIMESCALE_URL (or --url). Makes a database of its own,
fills two weeks of 10-second readings for 20 meters 25 days back and 5 days back, compresses the
older chunk with the real compression policy, then writes the same number of late readings (new
timestamps between the existing ones, through ingest's own COPY path with its duplicate fallback)
into each, three times, and refreshes the rollups of what was written. Prints medians and the
ratio compressed/uncompressed; the last line is JSON.

    python -m bench.timescale_backfill [--url URL] [--rows N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from parkpulse.db import migrate, refresh_rollups, server_dsn
from parkpulse.registry import import_registry
from parkpulse.synthetic import ReadingRow, synthetic_park, write_readings


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _rows(pks: list[int], start: datetime, n: int, offset_s: float) -> list[ReadingRow]:
    out: list[ReadingRow] = []
    per = max(1, n // len(pks))
    for pk in pks:
        for i in range(per):
            out.append((pk, 1, start + timedelta(seconds=10 * i + offset_s), float(i), 0))
    return out


def _write(conn: psycopg.Connection, rows: list[ReadingRow]) -> float:
    """As ingest writes a flush: COPY, then the dirty buckets, one transaction."""
    t = time.perf_counter()
    write_readings(conn, rows)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=os.environ.get("PARKPULSE_TEST_TIMESCALE_URL"))
    ap.add_argument("--rows", type=int, default=100_000, help="late readings per write")
    a = ap.parse_args()
    if not a.url:
        print("set PARKPULSE_TEST_TIMESCALE_URL or --url to a TimescaleDB server", file=sys.stderr)
        return 2
    name = f"pp_bench_tsb_{uuid.uuid4().hex[:6]}"
    dsn = server_dsn(a.url, name)
    try:
        migrate(dsn, prefer="timescale")
        with psycopg.connect(dsn) as conn:
            import_registry(conn, synthetic_park("bench", firms=2, meters_per_gateway=10))
            conn.commit()
            pks = [r[0] for r in conn.execute("SELECT device_pk FROM devices ORDER BY 1")]
            now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            old, recent = now - timedelta(days=25), now - timedelta(days=5)
            for start in (old, recent):
                _write(conn, _rows(pks, start, a.rows * 3, 0.0))
            while refresh_rollups(conn):
                pass
            conn.execute(
                "SELECT compress_chunk(c) FROM show_chunks('readings', older_than => now() - interval '14 days') c"
            )
            conn.commit()
            compressed = conn.execute(
                "SELECT count(*) FILTER (WHERE is_compressed), count(*) FROM timescaledb_information.chunks "
                "WHERE hypertable_name = 'readings'"
            ).fetchone()
            _log(f"chunks compressed / all: {compressed}")
            times: dict[str, list[float]] = {"uncompressed": [], "compressed": []}
            refresh: dict[str, list[float]] = {"uncompressed": [], "compressed": []}
            for k in range(3):
                for label, start in (("uncompressed", recent), ("compressed", old)):
                    rows = _rows(pks, start, a.rows, 1.0 + k)  # between the existing 10-s readings
                    times[label].append(_write(conn, rows))
                    t = time.perf_counter()
                    while refresh_rollups(conn):
                        pass
                    refresh[label].append(time.perf_counter() - t)
                    _log(
                        f"{label:12s} round {k}: write {times[label][-1]:.2f} s, refresh {refresh[label][-1]:.2f} s"
                    )
        med = {k: statistics.median(v) for k, v in times.items()}
        res = {
            "rows_per_write": a.rows,
            "write_s_uncompressed": round(med["uncompressed"], 3),
            "write_s_compressed": round(med["compressed"], 3),
            "rows_per_s_uncompressed": round(a.rows / med["uncompressed"]),
            "rows_per_s_compressed": round(a.rows / med["compressed"]),
            "ratio_compressed_vs_uncompressed": round(med["compressed"] / med["uncompressed"], 2),
            "refresh_s_uncompressed": round(statistics.median(refresh["uncompressed"]), 3),
            "refresh_s_compressed": round(statistics.median(refresh["compressed"]), 3),
        }
        print(
            f"late write of {a.rows:,} readings, median of 3: uncompressed {med['uncompressed']:.2f} s, "
            f"compressed {med['compressed']:.2f} s (×{res['ratio_compressed_vs_uncompressed']})"
        )
        print(json.dumps(res))
        return 0
    finally:
        with psycopg.connect(server_dsn(a.url, "postgres"), autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    raise SystemExit(main())
