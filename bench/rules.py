"""Benchmark: a full-year rules evaluation over 1 000 firms with 15-minute meter readings.

    python bench/rules.py                      # 1 000 firms, a year of 15-minute readings
    python bench/rules.py --firms 50 --days 31 # smaller, while developing
    python bench/rules.py --reuse              # reuse the prepared database of an earlier run

Setup (not timed): a fresh database, a synthetic park (parkpulse.synthetic), one boundary
electricity meter per firm whose kWh counter is COPYed in every 15 minutes, rollups refreshed
month by month, and the firms' economic data imported through `firms import`. Timed: one
`rules run --year` equivalent (refresh check, load from the views, evaluate, store).
The last line is JSON: {"firms": N, "seconds": S}.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

# This file is named like the package it measures: keep bench/ off the import path, the repo on it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from parkpulse.db import migrate, refresh_rollups, server_dsn  # noqa: E402
from parkpulse.registry import import_registry  # noqa: E402
from parkpulse.synthetic import synthetic_park  # noqa: E402
from rules._economics import import_economics  # noqa: E402
from rules._ruleset import load_rule_set  # noqa: E402
from rules._service import run_once  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
YEAR = 2025
MARK = "rules_bench_prepared"


def _log(msg: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def prepared(dsn: str, firms: int, days: int, step: int) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            row = conn.execute("SELECT value FROM store_info WHERE key = %s", (MARK,)).fetchone()
            return row is not None and row[0] == f"{firms}/{days}/{step}"
    except psycopg.Error:
        return False


def setup(admin: str, dbname: str, firms: int, days: int, step_min: int) -> str:
    dsn = server_dsn(admin, dbname)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    t0 = time.perf_counter()
    migrate(dsn, prefer="plain")
    park = "bench-rules"
    pf = synthetic_park(park, firms=firms, gateways_per_firm=1, meters_per_gateway=1)
    with psycopg.connect(dsn) as conn:
        import_registry(conn, pf)
        pks = [
            r[0]
            for r in conn.execute("SELECT device_pk FROM v_devices WHERE meter_level = 1 ORDER BY firm_id")
        ]
    _log(f"registry: {firms} firms, {len(pks)} boundary meters")
    start = datetime(YEAR, 1, 1, tzinfo=TZ)
    step = timedelta(minutes=step_min)
    n_steps = days * 24 * 60 // step_min
    rnd = random.Random(7)
    rates = [rnd.uniform(20, 400) for _ in pks]  # kWh per step
    total = 0
    with psycopg.connect(dsn) as conn:
        idx = 0
        while idx < n_steps:
            t_month = start + idx * step
            m_end = (t_month.replace(day=1) + timedelta(days=32)).replace(day=1)
            end_idx = min(n_steps, idx + int((m_end - t_month) / step))
            for t in (t_month, start + (end_idx - 1) * step):
                conn.execute("SELECT pp_ensure_partition(%s)", (t,))
            stamps = [
                (start + i * step).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00")
                for i in range(idx, end_idx)
            ]
            with conn.cursor().copy(
                "COPY readings (device_pk, metric_id, ts, value, quality) FROM STDIN"
            ) as cp:
                for pk, rate in zip(pks, rates, strict=True):
                    buf = io.StringIO()
                    for j, s in enumerate(stamps):
                        buf.write(f"{pk}\t1\t{s}\t{(idx + j) * rate:.3f}\t0\n")
                    cp.write(buf.getvalue())
            conn.execute(
                "INSERT INTO rollup_dirty SELECT generate_series(date_bin('15 minutes', %s::timestamptz, '2000-01-01'), "
                "%s::timestamptz, '15 minutes')",
                (start + idx * step, start + (end_idx - 1) * step),
            )
            conn.commit()
            total += len(stamps) * len(pks)
            t1 = time.perf_counter()
            refresh_rollups(conn)
            _log(
                f"{t_month:%Y-%m}: {len(stamps) * len(pks):,} readings copied, rollups refreshed in "
                f"{time.perf_counter() - t1:.1f} s"
            )
            idx = end_idx
    # economic data through the real import path
    rs = load_rule_set()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "economics.csv"
        lines = [
            "firm_id,added_value_10k_cny,tax_10k_cny,revenue_10k_cny,rd_spend_10k_cny,employees,pollutant_t,output_units"
        ]
        for f in pf.firms:
            av = rnd.uniform(500, 20000)
            lines.append(
                f"{f.id},{av:.2f},{av * rnd.uniform(0.05, 0.4):.2f},{av * 4:.2f},{av * 0.03:.2f},"
                f"{rnd.randint(20, 800)},{rnd.uniform(0.5, 30):.3f},{rnd.randint(1000, 100000)}"
            )
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        with psycopg.connect(dsn) as conn:
            import_economics(conn, rs, path, YEAR)
    with psycopg.connect(dsn) as conn:
        conn.execute("ANALYZE")
        conn.execute(
            "INSERT INTO store_info VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (MARK, f"{firms}/{days}/{step_min}"),
        )
        conn.commit()
    _log(f"setup done: {total:,} readings in {time.perf_counter() - t0:.0f} s")
    return dsn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--firms", type=int, default=1000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--step-min", type=int, default=15, help="minutes between readings")
    ap.add_argument("--admin-dsn", default="postgresql://127.0.0.1:5432/postgres")
    ap.add_argument("--db", default=None, help="database name (default rulesbench_<firms>_<days>)")
    ap.add_argument(
        "--reuse", action="store_true", help="reuse a prepared database of the same size if present"
    )
    ap.add_argument("--drop", action="store_true", help="drop the database afterwards")
    ap.add_argument("--repeat", type=int, default=1, help="timed evaluations (the best is reported)")
    args = ap.parse_args()
    dbname = args.db or f"rulesbench_{args.firms}_{args.days}"
    dsn = server_dsn(args.admin_dsn, dbname)
    if args.reuse and prepared(dsn, args.firms, args.days, args.step_min):
        _log(f"reusing prepared database {dbname}")
    else:
        dsn = setup(args.admin_dsn, dbname, args.firms, args.days, args.step_min)
    rs = load_rule_set()
    best = float("inf")
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        _, n = run_once(dsn, rs, YEAR)
        secs = time.perf_counter() - t0
        best = min(best, secs)
        _log(f"full-year evaluation of {n} firms: {secs:.2f} s")
    with psycopg.connect(dsn) as conn:
        classes: dict[str, int] = dict(
            conn.execute("SELECT class, count(*) FROM v_firm_kpi_year GROUP BY 1").fetchall()
        )
        _log(f"classes: {classes}")
    if args.drop:
        with psycopg.connect(args.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    print(json.dumps({"firms": n, "seconds": round(best, 3)}))


if __name__ == "__main__":
    main()
