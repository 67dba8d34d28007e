"""The set-based pricing of pp_firm_elec_tou_15m / pp_firm_elec_tou_daily (issues 15, 16) gives the
view's rows where the price of a slot changes within the range: a price change at a month start,
a tariff version change (other schedule, no price for the voltage class: period known, price NULL),
an assignment that ends and a new one that starts (other voltage class), and a firm without any
assignment (tariff columns NULL). Real PostgreSQL, hourly readings over six local days."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from costs_seed import TEST_TARIFFS, TZ, firm_id, load_day, register_park, write_test_tariffs
from test_costs_views import rows

from costs import Assignment, assign_tariff, load_tariffs, sync_tariffs
from parkpulse.catalogue import load_catalogue
from parkpulse.synthetic import ReadingRow

FIRST, LAST = date(2024, 6, 29), date(2024, 8, 3)
START = datetime(2024, 6, 28, 22, tzinfo=TZ)  # two hours before the range: the lag has a reading

# v1 gets a second price from July (a change at a month start inside the range)
TARIFFS = TEST_TARIFFS.replace(
    """              kv35: {floating: 0.5, fixed: 0.05}
""",
    """              kv35: {floating: 0.5, fixed: 0.05}
          - from_month: 2024-07
            source: test, July
            verified: false
            classes:
              kv1_10: {floating: 0.7, fixed: 0.1}
              kv35: {floating: 0.7, fixed: 0.05}
""",
)


def _hourly(pk: int, hours: int, kw: float, drop_at: int | None = None) -> list[ReadingRow]:
    """Hourly readings; from hour `drop_at` on the counter reads 500 kWh less (a negative step: suspect)."""
    mid = {m.name: m.id for m in load_catalogue().metrics}["elec_import_kwh"]
    return [
        (
            pk,
            mid,
            START + timedelta(hours=h),
            5000.0 + kw * h + (h % 5) - (500 if drop_at and h >= drop_at else 0),
            0,
        )
        for h in range(hours + 1)
    ]


def _seed(dsn: str, uid: str, tmp_path: Path) -> tuple[str, str]:
    assert "from_month: 2024-07" in TARIFFS
    hours = int((datetime(2024, 8, 4, 2, tzinfo=TZ) - START).total_seconds() // 3600)
    with psycopg.connect(dsn) as conn:
        priced = register_park(conn, f"{uid}-a")
        bare = register_park(conn, f"{uid}-b")
        sync_tariffs(conn, load_tariffs(write_test_tariffs(tmp_path, TARIFFS)))
        fid = firm_id(f"{uid}-a")
        # kv35 until 2 August (v2 has no kv35 price), then kv1_10
        assign_tariff(
            conn, Assignment(fid, "test-tou", date(2024, 1, 1), date(2024, 8, 2), voltage_class="kv35")
        )
        assign_tariff(conn, Assignment(fid, "test-tou", date(2024, 8, 2), voltage_class="kv1_10"))
        load_day(conn, _hourly(priced["m1"], hours, 40.0) + _hourly(bare["m1"], hours, 25.0, drop_at=50))
    return fid, firm_id(f"{uid}-b")


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]], what: str) -> None:
    assert len(a) == len(b), what
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys()
        for k in ra:
            if isinstance(ra[k], float):
                assert rb[k] == pytest.approx(ra[k], abs=1e-9), (what, k, ra)
            else:
                assert ra[k] == rb[k], (what, k, ra)


def test_set_based_pricing_equals_the_view_where_prices_change(
    db: str, unique_id: str, tmp_path: Path
) -> None:
    priced, bare = _seed(db, unique_id, tmp_path)
    order = "firm_id, bucket, period NULLS FIRST"
    v = rows(
        db,
        f"SELECT * FROM v_firm_elec_tou_15m WHERE firm_id IN (%s, %s) AND day BETWEEN %s AND %s ORDER BY {order}",
        priced,
        bare,
        FIRST,
        LAST,
    )
    f = rows(
        db, f"SELECT * FROM pp_firm_elec_tou_15m(%s, %s, %s) ORDER BY {order}", [priced, bare], FIRST, LAST
    )
    # every slot of both firms, but the three before the negative step (nothing spread over them)
    assert len(v) == 2 * 96 * ((LAST - FIRST).days + 1) - 3
    _same(v, f, "pp_firm_elec_tou_15m")
    # the cases the test is about are really there
    mine = [r for r in f if r["firm_id"] == priced]
    assert {r["tariff_id"] for r in f if r["firm_id"] == bare} == {None}
    assert any(r["suspect"] for r in f if r["firm_id"] == bare)
    assert sum(r["spread_kwh"] for r in mine) > 0  # hourly readings: spread over their slots
    assert all(r["price"] is None and r["period"] is None for r in f if r["firm_id"] == bare)
    peak = {r["day"]: r["price"] for r in mine if r["period"] == "peak"}
    assert peak[date(2024, 6, 30)] == pytest.approx(0.5 * 1.6 + 0.05)
    assert peak[date(2024, 7, 1)] == pytest.approx(0.7 * 1.6 + 0.05)
    assert peak[date(2024, 8, 2)] == pytest.approx(0.6 * 1.5)
    aug1 = [r for r in mine if r["day"] == date(2024, 8, 1)]
    assert {(r["tariff_version"], r["voltage_class"]) for r in aug1} == {("v2", "kv35")}
    assert all(r["price"] is None and r["verified"] is False for r in aug1 if r["period"] == "peak")
    assert {r["voltage_class"] for r in mine if r["day"] == date(2024, 8, 2)} == {"kv1_10"}
    order = "firm_id, day, period NULLS FIRST, price NULLS FIRST"
    v = rows(
        db,
        f"SELECT * FROM v_firm_elec_tou_daily WHERE firm_id IN (%s, %s) AND day BETWEEN %s AND %s ORDER BY {order}",
        priced,
        bare,
        FIRST,
        LAST,
    )
    f = rows(
        db, f"SELECT * FROM pp_firm_elec_tou_daily(%s, %s, %s) ORDER BY {order}", [priced, bare], FIRST, LAST
    )
    _same(v, f, "pp_firm_elec_tou_daily")
    assert {r["slots"] for r in f if r["firm_id"] == bare} == {96, 93}  # 93: the day of the negative step
