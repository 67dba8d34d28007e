"""Benchmark: the monthly Excel and PDF reports of 1 000 firms.

    python bench/reports.py                 # 1 000 firms, November 2025, 2 worker processes
    python bench/reports.py --firms 100     # smaller, while developing

Setup (not timed): a fresh database, a synthetic park (parkpulse.synthetic: one boundary meter per
firm and nine sub-meters), the boundary meter's kWh counter every hour of the month, rollups
refreshed, the shipped Henan TOU tariff assigned to every other firm. Timed: one read of the park
from the views, then every firm's Excel and PDF (zh), in `--workers` processes forked after the
read. Baseline in the same run: the same two files for 20 firms in one process (per-firm time).
Goal (issue 15): under 60 s and within 300 MB (peak RSS of the parent plus its workers).
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil
import psycopg

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from costs import DEFAULT_TARIFFS_FILE, Assignment, assign_tariff, load_tariffs, sync_tariffs  # noqa: E402
from parkpulse.db import migrate, refresh_rollups, server_dsn  # noqa: E402
from parkpulse.registry import import_registry  # noqa: E402
from parkpulse.synthetic import synthetic_park, write_readings  # noqa: E402
from reports import ParkData, Period, build_report, load_park, render_pdf, render_xlsx  # noqa: E402
from reports._fonts import report_font  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
PERIOD = Period(2025, 11)
_DATA: ParkData | None = None  # the park read once, inherited by the forked workers


def prepare(admin: str, firms: int) -> tuple[str, str]:
    name = f"pp_bench_reports_{int(time.time())}"
    dsn = server_dsn(admin, name)
    migrate(dsn, prefer="plain")
    park = "bench"
    with psycopg.connect(dsn) as conn:
        import_registry(conn, synthetic_park(park, firms=firms, meters_per_gateway=10))
        mid = conn.execute("SELECT metric_id FROM metrics WHERE name = 'elec_import_kwh'").fetchone()
        assert mid is not None
        pks = [
            r[0]
            for r in conn.execute(
                "SELECT device_pk FROM v_devices WHERE device_id = 'm000' ORDER BY device_pk"
            )
        ]
        start = datetime(2025, 11, 1, tzinfo=TZ)
        rows = []
        for i, pk in enumerate(pks):
            for h in range(30 * 24 + 1):
                rows.append((pk, mid[0], start + timedelta(hours=h), 1000.0 + h * (5 + i % 17), 0))
        write_readings(conn, rows)
        while refresh_rollups(conn) > 0:
            pass
        sync_tariffs(conn, load_tariffs(DEFAULT_TARIFFS_FILE))
        for f in range(0, firms, 2):
            assign_tariff(
                conn,
                Assignment(
                    f"{park}-f{f:04d}", "henan-industrial-tou", date(2025, 1, 1), voltage_class="kv1_10"
                ),
            )
        conn.commit()
    return dsn, park


def _one(firm_id: str) -> tuple[float, int]:
    assert _DATA is not None
    t0 = time.perf_counter()
    rep = build_report(_DATA, firm_id)
    size = len(render_xlsx(rep, "zh")) + len(render_pdf(rep, "zh"))
    return time.perf_counter() - t0, size


def _peak_rss_mb(proc: psutil.Process, peak: float) -> float:
    try:
        rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
    except psutil.Error:
        return peak
    return float(max(peak, rss / 2**20))


def main() -> None:
    global _DATA
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--firms", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--admin-url", default="postgresql://127.0.0.1:5432/postgres")
    a = ap.parse_args()
    print(f"preparing {a.firms} firms …", flush=True)
    dsn, park = prepare(a.admin_url, a.firms)
    report_font()  # the cached font subset is made once per machine, not per run
    me = psutil.Process()
    t0 = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        _DATA = load_park(conn, park, PERIOD)
    read_s = time.perf_counter() - t0
    firms = list(_DATA.firms)
    base = [_one(f)[0] for f in firms[:20]]
    peak = _peak_rss_mb(me, 0.0)
    t1 = time.perf_counter()
    per: list[float] = []
    with mp.get_context("fork").Pool(a.workers) as pool:
        for dt, _ in pool.imap_unordered(_one, firms, chunksize=8):
            per.append(dt)
            if len(per) % 50 == 0:
                peak = _peak_rss_mb(me, peak)
    render_s = time.perf_counter() - t1
    total = read_s + render_s
    print(f"read the park from the views: {read_s:.2f} s")
    print(f"{len(firms)} firms × (xlsx + pdf) in {a.workers} processes: {render_s:.2f} s")
    print(
        f"per firm: median {statistics.median(per) * 1000:.0f} ms in a worker; baseline (1 process, 20 firms) "
        f"{statistics.median(base) * 1000:.0f} ms; ratio {statistics.median(per) / statistics.median(base):.2f}"
    )
    print(f"total {total:.2f} s (goal < 60 s); peak RSS {peak:.0f} MB (goal < 300 MB)")
    with psycopg.connect(a.admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dsn.split("dbname=")[1].split()[0]}" WITH (FORCE)')
    print(
        json.dumps(
            {
                "firms": len(firms),
                "seconds": round(total, 2),
                "read_s": round(read_s, 2),
                "per_firm_ms_median": round(statistics.median(per) * 1000, 1),
                "peak_rss_mb": round(peak),
            }
        )
    )


if __name__ == "__main__":
    main()
