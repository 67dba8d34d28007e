"""The energy-cost dashboard (能源费用) on a real database, against hand-computed yuan.

The firm, its tariff and its metered day are the cost tests' fixture (tests/costs/costs_seed.py:
2024-07-15, sharp 440 / peak 1260 / flat 738 / valley 240 yuan, gas 875 yuan, a computed maximum
demand of 400 kW at 30 yuan/kW·month, peak 0.9 and valley 0.3 yuan/kWh). Every panel's SQL is
expanded as Grafana does (provisioning.sqlmacros) and run on plain PostgreSQL and, when
PARKPULSE_TEST_TIMESCALE_URL is set, on a real TimescaleDB; as the superuser and as the read-only
role of deploy/compose/grafana-grants.sql.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from costs import Assignment, assign_tariff, load_tariffs, sync_tariffs
from parkpulse.db import migrate, server_dsn
from provisioning.dashboards import iter_panels
from provisioning.panelcheck import check_dashboards, load_dashboards, resolve_variables
from provisioning.sqlmacros import TimeRange, expand

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "costs"))
from costs_seed import (  # noqa: E402
    EXPECTED_KWH,
    EXPECTED_YUAN,
    PRICES,
    day_rows,
    firm_id,
    load_day,
    register_park,
    write_test_tariffs,
)

DASH = "energy-cost.json"
GRANTS = ROOT / "deploy" / "compose" / "grafana-grants.sql"
PSQL_ARGS = ("psql", "-v", "ON_ERROR_STOP=1")
RANGE = TimeRange(datetime(2024, 7, 1, tzinfo=UTC), datetime(2024, 7, 31, 12, tzinfo=UTC))
DEMAND_YUAN = 400.0 * 30.0  # computed maximum demand × demand price of the test tariff (kv1_10)


def _seed(dsn: str, park: str, tmp_path: Path, *, valley_until: int) -> str:
    with psycopg.connect(dsn) as conn:
        dev = register_park(conn, park)
        sync_tariffs(conn, load_tariffs(write_test_tariffs(tmp_path)))
        fid = firm_id(park)
        assign_tariff(
            conn,
            Assignment(fid, "test-tou", date(2024, 1, 1), voltage_class="kv1_10", capacity_basis="demand"),
        )
        assign_tariff(conn, Assignment(fid, "test-gas", date(2024, 1, 1)))
        load_day(conn, day_rows(dev, valley_until=valley_until))
    return str(fid)


@pytest.fixture(params=["plain", pytest.param("timescale", marks=pytest.mark.timescale)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database: the `db` fixture (plain PostgreSQL) or a fresh one on TimescaleDB."""
    if request.param == "plain":
        yield request.getfixturevalue("db")
        return
    url = os.environ.get("PARKPULSE_TEST_TIMESCALE_URL")
    if not url:
        pytest.skip("PARKPULSE_TEST_TIMESCALE_URL is not set (no TimescaleDB on this machine)")
    dsn = server_dsn(url, f"pp_costdash_ts_{uuid.uuid4().hex[:8]}")
    try:
        migrate(dsn, prefer="timescale")
        yield dsn
    finally:
        with psycopg.connect(server_dsn(url, "postgres"), autocommit=True) as admin:
            name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _dashboard() -> dict[str, Any]:
    return load_dashboards()[DASH]


def _panel_rows(
    conn: psycopg.Connection,
    title: str,
    park: str,
    fid: str,
    shift: str = "1000",
    tr: TimeRange = RANGE,
) -> list[dict[str, Any]]:
    """The rows Grafana would get for the panel whose title starts with `title`."""
    d = _dashboard()
    (panel,) = [p for p in iter_panels(d) if p["title"].startswith(title)]
    variables = resolve_variables(conn, d, tr, {"park": [park], "firm": [fid], "shift_kwh": [shift]})
    sql = expand(panel["targets"][0]["rawSql"], variables, tr, panel.get("interval") or "1h")
    cur = conn.execute(sql.encode())
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _sums(rows: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in rows:
        out[r["metric"]] = out.get(r["metric"], 0.0) + float(r["value"])
    return out


def _check_all(conn: psycopg.Connection, park: str, fid: str) -> None:
    results = list(check_dashboards(conn, {DASH: _dashboard()}, RANGE, {"park": [park], "firm": [fid]}))
    n_targets = sum(len(p["targets"]) for p in iter_panels(_dashboard()))
    assert len(results) == n_targets == 8
    bad = [f"{r.panel}: {r.problems}\n{r.sql}" for r in results if r.problems or r.rows == 0]
    assert not bad, "\n\n".join(bad)


def test_cost_dashboard_shows_the_hand_computed_figures(store: str, unique_id: str, tmp_path: Path) -> None:
    fid = _seed(store, unique_id, tmp_path, valley_until=7)  # per-tariff registers one hour off
    with psycopg.connect(store) as conn:
        conn.read_only = True
        _check_all(conn, unique_id, fid)

        by_period = _panel_rows(conn, "分时电费", unique_id, fid)
        label = {"sharp": "尖峰 sharp", "peak": "高峰 peak", "flat": "平段 flat", "valley": "低谷 valley"}
        july15 = datetime(2024, 7, 15, tzinfo=UTC)
        assert {r["metric"]: r["value"] for r in by_period if r["time"] == july15} == pytest.approx(
            {label[p]: y for p, y in EXPECTED_YUAN.items()}
        )
        # the reading at 24:00 opens the next day's first slot, with nothing consumed in it yet
        assert all(r["value"] == 0 for r in by_period if r["time"] != july15)
        by_carrier = _panel_rows(conn, "分品种费用", unique_id, fid)
        assert _sums(by_carrier) == pytest.approx({"电 electricity": 2678.0, "天然气 natural gas": 875.0})
        (total,) = _panel_rows(conn, "区间能源费用", unique_id, fid)
        assert list(total.values()) == pytest.approx([2678.0, 875.0, 3553.0])

        (share,) = _panel_rows(conn, "峰段电量占比", unique_id, fid)
        peak_kwh = EXPECTED_KWH["sharp"] + EXPECTED_KWH["peak"]
        assert share["峰段占比 peak share"] == pytest.approx(100 * peak_kwh / sum(EXPECTED_KWH.values()))

        (demand,) = _panel_rows(conn, "本月基本电费", unique_id, fid)
        assert demand == pytest.approx({"基本电费 元": DEMAND_YUAN, "最大需量 kW": 400.0})

        mism = _panel_rows(conn, "分时电量与表计寄存器不符", unique_id, fid)
        # 07:00-08:00 (100 kWh) counted as flat by the meter, valley by the tariff's schedule; the
        # flat register also holds 23:55-24:00 (10 kWh), which v_counter_daily books on the 16th
        # (the day of the reading) and the split on the 15th, so flat is 90 kWh off. (The 16th, whose
        # only reading is that one at 24:00, is flagged too: see test_cost_dashboard_without_mismatch_lists_none.)
        on_15th = {r["时段 period"]: r["差值 diff kWh"] for r in mism if r["日期 day"] == date(2024, 7, 15)}
        assert on_15th == pytest.approx({"低谷 valley": 100.0, "平段 flat": -90.0})

        monthly = _panel_rows(conn, "月度费用明细", unique_id, fid)
        demand_row = [r for r in monthly if r["时段 period"] == "需量 demand"]
        assert [r["费用 元"] for r in demand_row] == pytest.approx([DEMAND_YUAN])
        assert sum(r["费用 元"] or 0 for r in monthly) == pytest.approx(3553.0 + DEMAND_YUAN)
        water = [r for r in monthly if r["品种 carrier"] == "水 water"]
        assert [(r["数量 quantity"], r["费用 元"]) for r in water] == [(32.0, None)]  # metered, no tariff

        (shift,) = _panel_rows(conn, "移峰填谷测算", unique_id, fid)
        assert shift["高峰价 peak 元/kWh"] == pytest.approx(PRICES["peak"])
        assert shift["低谷价 valley 元/kWh"] == pytest.approx(PRICES["valley"])
        assert shift["可节省 saving 元"] == pytest.approx(1000 * (PRICES["peak"] - PRICES["valley"]))
        assert (shift["电价 tariff"], shift["版本 version"], shift["已核实 verified"]) == (
            "test-tou",
            "v1",
            True,
        )
        assert shift["说明 note"] is None


def test_cost_dashboard_without_mismatch_lists_none(db: str, unique_id: str, tmp_path: Path) -> None:
    """A meter whose registers agree with the schedule gives no mismatch row on its metered day
    (the table is not merely a list of every register check).

    The range ends with the 15th: the 16th holds only the reading at 24:00, whose 5-minute step
    the register check books on the 16th (v_counter_daily) but the split on the 15th, so the view
    flags that day (10 kWh against 0); a boundary effect of v_firm_tou_register_check, not of the panel.
    """
    fid = _seed(db, unique_id, tmp_path, valley_until=8)
    the_15th = TimeRange(datetime(2024, 7, 14, tzinfo=UTC), datetime(2024, 7, 15, 23, tzinfo=UTC))
    with psycopg.connect(db) as conn:
        assert _panel_rows(conn, "分时电量与表计寄存器不符", unique_id, fid, tr=the_15th) == []
        assert len(_panel_rows(conn, "分时电费", unique_id, fid, tr=the_15th)) == 4
        assert len(_panel_rows(conn, "分时电量与表计寄存器不符", unique_id, fid)) == 1  # the 16th


@pytest.mark.parametrize(
    ("typed", "kwh"),
    [("2.5", 2.5), (" 300 ", 300.0), (".5", 0.5), ("abc", None), ("-5", None), ("1e3", None), ("", None)],
)
def test_cost_dashboard_shift_takes_x_from_its_variable(
    db: str, unique_id: str, tmp_path: Path, typed: str, kwh: float | None
) -> None:
    fid = _seed(db, unique_id, tmp_path, valley_until=8)
    with psycopg.connect(db) as conn:
        (row,) = _panel_rows(conn, "移峰填谷测算", unique_id, fid, shift=typed)
    if kwh is None:
        assert row["X kWh"] is None and row["可节省 saving 元"] is None
        assert row["说明 note"].endswith(f"got '{typed.strip()}'"), row["说明 note"]
        assert "X must be a non-negative number of kWh" in row["说明 note"]
    else:
        assert row["X kWh"] == pytest.approx(kwh) and row["说明 note"] is None
        assert row["可节省 saving 元"] == pytest.approx(kwh * (PRICES["peak"] - PRICES["valley"]))


def test_cost_dashboard_shift_value_stays_a_literal(db: str, unique_id: str, tmp_path: Path) -> None:
    """Whatever is typed into X is data: a quote cannot end the literal (Grafana doubles it)."""
    fid = _seed(db, unique_id, tmp_path, valley_until=8)
    typed = "1'); DROP VIEW v_parks CASCADE; --"
    with psycopg.connect(db) as conn:
        (row,) = _panel_rows(conn, "移峰填谷测算", unique_id, fid, shift=typed)
        conn.commit()
        assert row["可节省 saving 元"] is None and typed in row["说明 note"]
        assert conn.execute("SELECT to_regclass('public.v_parks')").fetchone() == ("v_parks",)


@pytest.mark.skipif(not shutil.which("psql"), reason="needs psql")
def test_grafana_role_reads_every_cost_panel(db: str, pg_admin: str, unique_id: str, tmp_path: Path) -> None:
    """As the read-only role of grafana-grants.sql every panel runs and returns rows; the tariff
    tables beneath the views stay closed to it."""
    fid = _seed(db, unique_id, tmp_path, valley_until=7)
    role = f"pp_grafana_{uuid.uuid4().hex[:8]}"
    try:
        run = subprocess.run(
            [*PSQL_ARGS, db, "-v", f"role={role}", "-v", "pw=s3cret", "-f", str(GRANTS)],
            capture_output=True,
            text=True,
            env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        with psycopg.connect(db, user=role) as conn:
            _check_all(conn, unique_id, fid)
            for table in ("tariff_prices", "firm_tariffs"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(f"SELECT * FROM {table} LIMIT 1")
                conn.rollback()
            # the functions' inner steps run with their owner's rights: closed to everyone else
            for fn in ("pp_firm_elec_15m", "pp_firm_elec_tou_15m", "pp_firm_elec_tou_daily"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(f"SELECT * FROM {fn}(NULL, current_date, current_date)")
                conn.rollback()
    finally:
        with psycopg.connect(db, autocommit=True) as c:
            c.execute(f'DROP OWNED BY "{role}"')
        with psycopg.connect(pg_admin, autocommit=True) as admin:
            dbname = psycopg.conninfo.conninfo_to_dict(db)["dbname"]
            admin.execute(f'REVOKE ALL ON DATABASE "{dbname}" FROM "{role}"')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')
