"""The bounded cost functions (pp_firm_elec_15m, pp_firm_elec_tou_15m, pp_firm_elec_tou_daily,
pp_firm_cost_daily, pp_firm_cost_monthly) equal their views filtered to the range, on plain
PostgreSQL and on TimescaleDB, for ranges whose edges need readings outside them: a day whose first slots take the rise since the previous day's last
reading, and a day whose last slot gets part of a rise read only the next day."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from costs_seed import DAY as DAY_START
from costs_seed import day_rows, firm_id, load_day, register_park, write_test_tariffs
from psycopg import errors
from test_costs_views import TS_URL, rows, ts_dsn  # noqa: F401 (ts_dsn: the fixture)

from costs import Assignment, assign_tariff, load_tariffs, sync_tariffs
from parkpulse.catalogue import load_catalogue
from parkpulse.synthetic import ReadingRow

DAY = date(2024, 7, 15)
NEXT = DAY + timedelta(days=1)

# (view, function, order) compared row by row; the monthly view lists months.
PAIRS = (
    ("v_firm_elec_15m", "pp_firm_elec_15m", "bucket"),
    ("v_firm_elec_tou_15m", "pp_firm_elec_tou_15m", "bucket"),
    ("v_firm_elec_tou_daily", "pp_firm_elec_tou_daily", "day, period, price"),
    ("v_firm_cost_daily", "pp_firm_cost_daily", "day, carrier, period, price"),
)


def _next_day_rows(dsn: str, park: str) -> list[ReadingRow]:
    """m1 on the next day: silent from 23:55 until 00:40, then every 20 minutes at 120 kW."""
    ids = {m.name: m.id for m in load_catalogue().metrics}
    with psycopg.connect(dsn) as conn:
        pk = conn.execute(
            "SELECT device_pk FROM v_devices WHERE park_id = %s AND device_id = 'm1'", (park,)
        ).fetchone()
    assert pk is not None
    # 23:55 of DAY read 10_000 + 3830 - 10 (the last 5 minutes at 120 kW are not read: see _seed)
    total = 10_000.0 + 3830.0 - 10.0
    start = DAY_START + timedelta(days=1, minutes=40)
    out: list[ReadingRow] = []
    for k in range(10):
        total += 120.0 * (45 if k == 0 else 20) / 60
        out.append((int(pk[0]), ids["elec_import_kwh"], start + timedelta(minutes=20 * k), total, 0))
    return out


def _seed(dsn: str, park: str, tmp_path: Path) -> str:
    """The metered day of costs_seed without its 24:00 reading (m1 last read at 23:55), then
    _next_day_rows; tariff test-tou with the demand charge."""
    end = DAY_START + timedelta(days=1)
    with psycopg.connect(dsn) as conn:
        dev = register_park(conn, park)
        sync_tariffs(conn, load_tariffs(write_test_tariffs(tmp_path)))
        fid = firm_id(park)
        assign_tariff(
            conn,
            Assignment(fid, "test-tou", date(2024, 1, 1), voltage_class="kv1_10", capacity_basis="demand"),
        )
        assign_tariff(conn, Assignment(fid, "test-gas", date(2024, 1, 1)))
        load_day(conn, [r for r in day_rows(dev, max_demand_kw=None) if r[2] < end])
        load_day(conn, _next_day_rows(dsn, park))
    return fid


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]], what: str) -> None:
    assert len(a) == len(b), what
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys()
        for k in ra:
            if isinstance(ra[k], float):
                assert rb[k] == pytest.approx(ra[k], abs=1e-9), (what, k, ra)
            else:
                assert ra[k] == rb[k], (what, k, ra)


def _check(dsn: str, fid: str) -> None:
    for lo, hi in ((NEXT, NEXT), (DAY, DAY), (DAY - timedelta(days=3), NEXT + timedelta(days=2))):
        for view, fn, order in PAIRS:
            v = rows(
                dsn,
                f"SELECT * FROM {view} WHERE firm_id = %s AND day BETWEEN %s AND %s ORDER BY {order}",
                fid,
                lo,
                hi,
            )
            f = rows(dsn, f"SELECT * FROM {fn}(%s, %s, %s) ORDER BY {order}", [fid], lo, hi)
            assert v, (view, lo, hi)
            _same(v, f, f"{fn} {lo}..{hi}")
    order = "month, carrier, period, price"
    v = rows(dsn, f"SELECT * FROM v_firm_cost_monthly WHERE firm_id = %s ORDER BY {order}", fid)
    f = rows(dsn, f"SELECT * FROM pp_firm_cost_monthly(%s, %s, %s) ORDER BY {order}", [fid], DAY, DAY)
    assert any(r["period"] == "demand" for r in f)
    _same(v, f, "pp_firm_cost_monthly")


def _edges_matter(dsn: str, fid: str) -> None:
    """The ranges above really need readings outside them (else the test proves nothing)."""
    first = rows(dsn, "SELECT * FROM pp_firm_elec_15m(%s, %s, %s) ORDER BY bucket LIMIT 1", [fid], NEXT, NEXT)
    # the 90 kWh read at 00:40 since 23:55 are spread over 23:55 .. 00:30 (the start of the bucket
    # that has the reading): 15 of those 35 minutes fall in slot 00:00-00:15
    assert first[0]["slot"] == 0 and first[0]["kwh"] == pytest.approx(90 * 15 / 35)
    assert first[0]["spread_kwh"] == pytest.approx(90 * 15 / 35)
    last = rows(
        dsn, "SELECT * FROM pp_firm_elec_15m(%s, %s, %s) ORDER BY bucket DESC LIMIT 1", [fid], DAY, DAY
    )
    # 23:45-24:00: 20 kWh read within the bucket (23:45 .. 23:55) + 5 of those 35 minutes
    assert last[0]["slot"] == 95 and last[0]["kwh"] == pytest.approx(20 + 90 * 5 / 35)


def test_the_functions_equal_the_views_over_a_range(db: str, unique_id: str, tmp_path: Path) -> None:
    fid = _seed(db, unique_id, tmp_path)
    _edges_matter(db, fid)
    _check(db, fid)


@pytest.mark.timescale
def test_the_functions_equal_the_views_on_timescaledb(
    ts_dsn: str,  # noqa: F811 (the fixture imported above)
    unique_id: str,
    tmp_path: Path,
) -> None:
    assert TS_URL
    fid = _seed(ts_dsn, unique_id, tmp_path)
    _edges_matter(ts_dsn, fid)
    _check(ts_dsn, fid)


def test_bad_bounds_are_refused_naming_them(db: str) -> None:
    with psycopg.connect(db) as conn:
        with pytest.raises(
            errors.InvalidParameterValue,
            match=r"pp_firm_cost_daily: p_from 2024-03-01 is after p_to 2024-02-01",
        ):
            conn.execute("SELECT * FROM pp_firm_cost_daily(NULL, '2024-03-01', '2024-02-01')")
        conn.rollback()
        with pytest.raises(
            errors.InvalidParameterValue,
            match=r"pp_firm_cost_monthly: p_from and p_to must be dates \(got p_from NULL, p_to 2024-02-01\)",
        ):
            conn.execute("SELECT * FROM pp_firm_cost_monthly(NULL, NULL, '2024-02-01')")


def test_a_firm_without_readings_in_the_range_has_no_rows(db: str, unique_id: str, tmp_path: Path) -> None:
    fid = _seed(db, unique_id, tmp_path)
    assert rows(db, "SELECT * FROM pp_firm_cost_daily(%s, '2023-01-01', '2023-12-31')", [fid]) == []
    assert rows(db, "SELECT * FROM pp_firm_elec_15m(%s, %s, %s)", ["no-such-firm"], DAY, DAY) == []
