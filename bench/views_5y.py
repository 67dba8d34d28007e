"""Benchmark: every Grafana panel and the console's firm page over five years of meter history.

    python -m bench.views_5y                    # 1 000 meters, 5 years (setup about 2 minutes)
    python -m bench.views_5y --reuse            # reuse the prepared database of an earlier run
    python -m bench.views_5y --meters 100 --years 1 --repeat 5   # while developing

Setup (not timed): a fresh plain-path database, a synthetic park of `meters / 10` firms with 10
meters each (one boundary meter, nine sub-meters), and for every meter `elec_import_kwh` as it
would be after five years of 15-minute readings. Writing 175 M raw readings and refreshing them
takes hours here, so the rollups are generated directly in SQL, as the refresher would leave
them: `rollup_1d` for every meter and every local day of the five years (96 readings a day), and
`rollup_1h` / `rollup_15m` for the measured firm's meters over the measured year and for every
meter over the measured park-day (the 15-minute and hourly panels filter on one firm or one day
through the primary key, so other meters' rows change little). `counter_daily` is then filled by
the refresher's own function, `pp_refresh_counter_daily(days)`, one year of days per call (timed
and reported: it is what a backfill of that size costs the refresher).

Timed: each dashboard's variables resolved and each panel target's SQL expanded as Grafana does
(provisioning.panelcheck's listing), run `--repeat` times, p50/p95 per panel, for (a) the last 365
days and one firm, (b) one park-day (yesterday, local); and the console firm page's queries
(console._queries: firm_info, firm_energy, firm_kpis, firm_compliance). The baseline, in the same
run and database: the panels that read the energy views, with v_counter_daily /
v_energy_daily / v_firm_energy_daily replaced by their pre-issue-16 definitions (lag() over every
daily rollup) in a schema `old` put first on the search_path. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from console import _queries as console_q  # noqa: E402
from console.scope import Scope  # noqa: E402
from parkpulse.db import migrate, server_dsn  # noqa: E402
from parkpulse.db._lag_reference import lag_counter_daily_sql  # noqa: E402
from parkpulse.registry import import_registry  # noqa: E402
from parkpulse.synthetic import synthetic_park  # noqa: E402
from provisioning.dashboards import iter_panels  # noqa: E402
from provisioning.panelcheck import load_dashboards, resolve_variables  # noqa: E402
from provisioning.sqlmacros import TimeRange, expand  # noqa: E402

TZ_NAME = "Asia/Shanghai"
TZ = ZoneInfo(TZ_NAME)
MARK = "views_5y_prepared"
GOAL_MS = 300.0
OLD_VIEWS = ("v_counter_daily", "v_energy_daily", "v_firm_energy_daily")


# Rollups as the refresher leaves them for a counter rising `rate` kWh per 15 minutes: reading
# number i (15-minute steps since the origin) reads i × rate; a row holds readings k … k + n - 1.
_ROLLUP = """
INSERT INTO {table} (device_pk, metric_id, bucket, n, sum, min, max, first, first_ts, last, last_ts, worst_quality, n_good)
SELECT d.device_pk, 1, g.b, {n}, d.rate * ({n} * kk.k + {tri}), kk.k * d.rate, (kk.k + {n} - 1) * d.rate,
       kk.k * d.rate, g.b, (kk.k + {n} - 1) * d.rate, g.b + interval '{last_off}', 0, {n}
FROM unnest(%(pks)s::int[], %(rates)s::float8[]) AS d(device_pk, rate)
CROSS JOIN generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz, interval '{step}') AS g(b)
CROSS JOIN LATERAL (SELECT (extract(epoch FROM g.b - %(origin)s::timestamptz) / 900)::bigint AS k) kk
ON CONFLICT DO NOTHING
"""
_SPEC = {  # table: (step, readings per row, offset of the last reading)
    "rollup_1d": ("1 day", 96, "23 hours 45 minutes"),
    "rollup_1h": ("1 hour", 4, "45 minutes"),
    "rollup_15m": ("15 minutes", 1, "0 minutes"),
}


def _log(msg: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def _local_midnight(d: datetime) -> datetime:
    return d.astimezone(TZ).replace(hour=0, minute=0, second=0, microsecond=0)


def _rollups(
    conn: psycopg.Connection,
    table: str,
    pks: list[int],
    rates: list[float],
    lo: datetime,
    hi_excl: datetime,
    origin: datetime,
) -> None:
    step, n, last_off = _SPEC[table]
    sql = _ROLLUP.format(table=table, n=n, tri=n * (n - 1) // 2, step=step, last_off=last_off)
    conn.execute(
        sql.encode(),
        {"pks": pks, "rates": rates, "lo": lo, "hi": hi_excl - timedelta(seconds=1), "origin": origin},
    )


def setup(admin: str, dbname: str, meters: int, years: int) -> tuple[str, dict[str, Any]]:
    dsn = server_dsn(admin, dbname)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    migrate(dsn, prefer="plain", timezone=TZ_NAME)
    firms = max(1, meters // 10)
    pf = synthetic_park("bench-views", firms=firms, gateways_per_firm=1, meters_per_gateway=10)
    info: dict[str, Any] = {}
    with psycopg.connect(dsn) as conn:
        import_registry(conn, pf)
        rows = conn.execute("SELECT device_pk, firm_id FROM v_devices ORDER BY device_pk").fetchall()
        pks = [r[0] for r in rows]
        rates = [1.0 + (pk * 7919 % 400) / 10.0 for pk in pks]  # kWh per 15 minutes
        firm = pf.firms[len(pf.firms) // 2].id
        firm_pks = [r[0] for r in rows if r[1] == firm]
        today = _local_midnight(datetime.now(UTC))
        start = today - timedelta(days=round(365.25 * years))
        year_lo = today - timedelta(days=365)
        park_day = today - timedelta(days=1)
        t0 = time.perf_counter()
        _rollups(conn, "rollup_1d", pks, rates, start, today + timedelta(days=1), start)
        conn.commit()
        _log(
            f"rollup_1d: {len(pks)} meters × {(today - start).days + 1} days in {time.perf_counter() - t0:.0f} s"
        )
        frates = [rates[pks.index(p)] for p in firm_pks]
        for table in ("rollup_1h", "rollup_15m"):
            _rollups(conn, table, firm_pks, frates, year_lo, today + timedelta(days=1), start)
            _rollups(conn, table, pks, rates, park_day, park_day + timedelta(days=1), start)
        conn.commit()
        _log(
            f"rollup_1h / rollup_15m for firm {firm} (a year) and the park-day: {time.perf_counter() - t0:.0f} s"
        )
        t1 = time.perf_counter()
        written = 0
        day = start
        while day <= today:
            upto = min(today + timedelta(days=1), day + timedelta(days=366))
            days = [
                b
                for (b,) in conn.execute(
                    "SELECT generate_series(%s::timestamptz, %s::timestamptz - interval '1 second', interval '1 day')",
                    (day, upto),
                )
            ]
            got = conn.execute("SELECT pp_refresh_counter_daily(%s::timestamptz[])", (days,)).fetchone()
            written += int(got[0]) if got else 0
            conn.commit()
            day = upto
        secs = time.perf_counter() - t1
        _log(f"counter_daily: {written:,} rows by pp_refresh_counter_daily in {secs:.1f} s")
        conn.execute("ANALYZE")
        conn.commit()
        info = {
            "firm": firm,
            "park": pf.park.id,
            "counter_daily_rows": written,
            "counter_daily_fill_s": round(secs, 1),
        }
        conn.execute(
            "INSERT INTO store_info VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (MARK, json.dumps({"meters": meters, "years": years, **info})),
        )
        conn.commit()
    return dsn, info


def prepared(dsn: str, meters: int, years: int) -> dict[str, Any] | None:
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            row = conn.execute("SELECT value FROM store_info WHERE key = %s", (MARK,)).fetchone()
    except psycopg.Error:
        return None
    if row is None:
        return None
    info: dict[str, Any] = json.loads(row[0])
    return info if info.get("meters") == meters and info.get("years") == years else None


def create_old_views(conn: psycopg.Connection) -> None:
    """The pre-issue-16 energy views in schema `old` (the baseline)."""
    kernel = resources.files("parkpulse.db").joinpath("views", "10_kernel.sql").read_text(encoding="utf-8")
    conn.execute("DROP SCHEMA IF EXISTS old CASCADE")
    conn.execute("CREATE SCHEMA old")
    conn.execute(("CREATE VIEW old.v_counter_daily AS" + lag_counter_daily_sql(TZ_NAME)).encode())
    conn.execute("SET search_path = old, public")
    for name in OLD_VIEWS[1:]:
        start = kernel.index(f"CREATE OR REPLACE VIEW {name} AS")
        text = kernel[start : kernel.index(";", start)].replace(f"VIEW {name}", f"VIEW old.{name}")
        conn.execute(text.replace("{{timezone}}", TZ_NAME).encode())
    conn.execute("SET search_path = public")
    conn.commit()


def _time(run: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        run()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(0.95 * len(s)) - 1))]


def panel_timings(
    conn: psycopg.Connection,
    label: str,
    tr: TimeRange,
    chosen: dict[str, list[str]],
    repeat: int,
    old_repeat: int,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for dname, d in load_dashboards().items():
        variables = resolve_variables(conn, d, tr, chosen)
        conn.commit()
        for p in iter_panels(d):
            for t in p.get("targets", []):
                q = expand(t["rawSql"], variables, tr, p.get("interval") or "1h")

                def run(q: str = q) -> object:
                    rows = conn.execute(q.encode()).fetchall()
                    conn.commit()
                    return rows

                rows = len(conn.execute(q.encode()).fetchall())  # warm
                conn.commit()
                new = _time(run, repeat)
                rec: dict[str, Any] = {
                    "case": label,
                    "panel": f"{dname}/{p.get('title', '?')}",
                    "rows": rows,
                    "p50_ms": round(statistics.median(new), 1),
                    "p95_ms": round(_p95(new), 1),
                }
                if any(v in q for v in OLD_VIEWS):
                    conn.execute("SET search_path = old, public")
                    old = _time(run, old_repeat)
                    conn.execute("SET search_path = public")
                    conn.commit()
                    rec["old_p50_ms"] = round(statistics.median(old), 1)
                    rec["speedup"] = round(statistics.median(old) / max(statistics.median(new), 0.01), 1)
                out.append(rec)
    return out


def console_timings(dsn: str, firm: str, repeat: int) -> list[dict[str, Any]]:
    scope = Scope("bench", None, frozenset({"admin"}), (), ())
    calls: dict[str, Callable[[psycopg.AsyncConnection[Any]], Awaitable[object]]] = {
        "firm_info": lambda c: console_q.firm_info(c, scope, firm),
        "firm_energy": lambda c: console_q.firm_energy(c, scope, firm),
        "firm_kpis": lambda c: console_q.firm_kpis(c, scope, firm),
        "firm_compliance": lambda c: console_q.firm_compliance(c, scope, firm),
    }

    async def go() -> list[dict[str, Any]]:
        res = []
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            for name, call in calls.items():
                await call(conn)
                xs = []
                for _ in range(repeat):
                    t = time.perf_counter()
                    await call(conn)
                    xs.append((time.perf_counter() - t) * 1000)
                res.append(
                    {
                        "case": "console firm page",
                        "panel": name,
                        "p50_ms": round(statistics.median(xs), 1),
                        "p95_ms": round(_p95(xs), 1),
                    }
                )
        return res

    return asyncio.run(go())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--meters", type=int, default=1000)
    ap.add_argument("--years", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=20, help="timed runs per panel (p95 over these)")
    ap.add_argument("--old-repeat", type=int, default=3, help="timed runs of the lag() baseline per panel")
    ap.add_argument("--admin-dsn", default="postgresql://127.0.0.1:5432/postgres")
    ap.add_argument("--db", default=None)
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--drop", action="store_true", help="drop the database afterwards")
    args = ap.parse_args()
    dbname = args.db or f"viewsbench_{args.meters}_{args.years}"
    dsn = server_dsn(args.admin_dsn, dbname)
    info = prepared(dsn, args.meters, args.years) if args.reuse else None
    if info is None:
        dsn, info = setup(args.admin_dsn, dbname, args.meters, args.years)
    else:
        _log(f"reusing prepared database {dbname}")
    today = _local_midnight(datetime.now(UTC))
    chosen = {"park": [info["park"]], "firm": [info["firm"]]}
    results: list[dict[str, Any]] = []
    with psycopg.connect(dsn) as conn:
        create_old_views(conn)
        results += panel_timings(
            conn,
            "firm-year",
            TimeRange(today - timedelta(days=365), today),
            chosen,
            args.repeat,
            args.old_repeat,
        )
        results += panel_timings(
            conn,
            "park-day",
            TimeRange(today - timedelta(days=1), today),
            chosen,
            args.repeat,
            args.old_repeat,
        )
    results += console_timings(dsn, info["firm"], args.repeat)
    for r in results:
        old = f"  old p50 {r['old_p50_ms']:9.1f} ms  ×{r['speedup']}" if "old_p50_ms" in r else ""
        print(
            f"{r['case']:18} {r['panel'][:60]:60} p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms{old}"
        )
    worst = max(results, key=lambda r: r["p95_ms"])
    with_old = [r for r in results if "speedup" in r]
    summary = {
        "meters": args.meters,
        "years": args.years,
        "panels": len(results),
        "worst_p95_ms": worst["p95_ms"],
        "worst_panel": f"{worst['case']}: {worst['panel']}",
        "over_goal": sum(1 for r in results if r["p95_ms"] >= GOAL_MS),
        "energy_panels": len(with_old),
        "median_speedup_vs_lag_view": round(statistics.median(r["speedup"] for r in with_old), 1)
        if with_old
        else None,
        "counter_daily_rows": info["counter_daily_rows"],
        "counter_daily_fill_s": info["counter_daily_fill_s"],
    }
    print(
        f"goal p95 < {GOAL_MS:.0f} ms per panel: worst {worst['p95_ms']} ms ({summary['worst_panel']}), "
        f"{summary['over_goal']} over; energy panels {summary['median_speedup_vs_lag_view']}× faster than the lag() view"
    )
    if args.drop:
        with psycopg.connect(args.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
