"""The cost views on a real PostgreSQL, against hand-computed yuan (costs_seed.py has the table)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
from costs_seed import (
    EXPECTED_KWH,
    EXPECTED_YUAN,
    PRICES,
    day_rows,
    firm_id,
    load_day,
    register_park,
    write_test_tariffs,
)
from psycopg import sql

from costs import Assignment, assign_tariff, load_tariffs, sync_tariffs
from parkpulse.db import migrate, server_dsn

DAY = date(2024, 7, 15)


def seed(
    dsn: str,
    park: str,
    tmp_path: Path,
    *,
    basis: str = "demand",
    valley_until: int = 8,
    max_demand: float | None = None,
) -> str:
    with psycopg.connect(dsn) as conn:
        dev = register_park(conn, park)
        sync_tariffs(conn, load_tariffs(write_test_tariffs(tmp_path)))
        fid = firm_id(park)
        assign_tariff(
            conn,
            Assignment(
                fid,
                "test-tou",
                date(2024, 1, 1),
                voltage_class="kv1_10",
                capacity_basis=basis,  # type: ignore[arg-type]
                transformer_kva=630.0 if basis == "capacity" else None,
            ),
        )
        assign_tariff(conn, Assignment(fid, "test-gas", date(2024, 1, 1)))
        load_day(conn, day_rows(dev, valley_until=valley_until, max_demand_kw=max_demand))
    return fid


def rows(dsn: str, sql: str, *args: object) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(sql, args)
        names = [c.name for c in cur.description or []]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def test_a_day_costs_what_the_hand_computation_says(db: str, unique_id: str, tmp_path: Path) -> None:
    fid = seed(db, unique_id, tmp_path)
    daily = rows(
        db,
        "SELECT * FROM v_firm_cost_daily WHERE firm_id = %s AND day = %s ORDER BY carrier, period",
        fid,
        DAY,
    )
    elec = {r["period"]: r for r in daily if r["carrier"] == "electricity"}
    assert set(elec) == {"sharp", "peak", "flat", "valley"}
    for period, r in elec.items():
        assert r["quantity"] == pytest.approx(EXPECTED_KWH[period], abs=1e-6), period
        assert r["price"] == pytest.approx(PRICES[period]), period
        assert r["cost_yuan"] == pytest.approx(EXPECTED_YUAN[period], abs=1e-6), period
        # every yuan traceable: tariff, version, class and how the price was formed
        assert (r["tariff_id"], r["tariff_version"], r["voltage_class"], r["verified"]) == (
            "test-tou",
            "v1",
            "kv1_10",
            True,
        )
        assert (
            r["price_basis"]
            == {
                "sharp": "0.5 × 2 (sharp) + 0.1",
                "peak": "0.5 × 1.6 (peak) + 0.1",
                "flat": "0.5 × 1 (flat) + 0.1",
                "valley": "0.5 × 0.4 (valley) + 0.1",
            }[period]
        )
        # the registers agree within the tolerance (they count the day's last 5 minutes on the next day)
        assert r["register_mismatch"] is False, period
    assert sum(float(r["cost_yuan"]) for r in elec.values()) == pytest.approx(2678.0, abs=1e-6)

    gas = next(r for r in daily if r["carrier"] == "natural_gas")
    assert (gas["quantity"], gas["unit"], gas["price"], gas["tariff_id"]) == (250.0, "m3", 3.5, "test-gas")
    assert gas["cost_yuan"] == pytest.approx(875.0)
    water = next(r for r in daily if r["carrier"] == "water")
    assert water["quantity"] == 32.0 and water["cost_yuan"] is None and water["tariff_id"] is None

    # the computed split adds up to the firm's daily energy of the store contract (sub-meter m2 not counted)
    total = rows(
        db,
        "SELECT quantity FROM v_firm_energy_daily WHERE firm_id = %s AND carrier = 'electricity' AND day = %s",
        fid,
        DAY,
    )
    assert total[0]["quantity"] == pytest.approx(3830.0 - 10.0)  # its day ends with the 23:55 reading
    assert sum(float(r["quantity"]) for r in elec.values()) == pytest.approx(3830.0)


def test_a_meter_whose_registers_disagree_is_flagged(db: str, unique_id: str, tmp_path: Path) -> None:
    # the meter counts 07:00-08:00 as flat, the tariff says valley: 100 kWh in the wrong register
    fid = seed(db, unique_id, tmp_path, valley_until=7)
    check = {
        r["period"]: r
        for r in rows(db, "SELECT * FROM v_firm_tou_register_check WHERE firm_id = %s AND day = %s", fid, DAY)
    }
    assert check["valley"]["register_kwh"] == pytest.approx(700.0)
    assert check["valley"]["computed_kwh"] == pytest.approx(800.0)
    assert check["valley"]["mismatch"] is True and check["flat"]["mismatch"] is True
    assert check["peak"]["mismatch"] is False and check["sharp"]["mismatch"] is False
    monthly = rows(
        db,
        "SELECT period, register_mismatch FROM v_firm_cost_monthly WHERE firm_id = %s AND carrier = 'electricity'",
        fid,
    )
    flagged = {r["period"] for r in monthly if r["register_mismatch"]}
    assert flagged == {"valley", "flat"}


def test_demand_charge_from_the_largest_15_minutes_or_the_meter(
    db: str, make_db: object, unique_id: str, tmp_path: Path
) -> None:
    fid = seed(db, unique_id, tmp_path)
    m = rows(db, "SELECT * FROM v_firm_cost_monthly WHERE firm_id = %s AND period = 'demand'", fid)
    assert len(m) == 1
    assert m[0]["quantity"] == pytest.approx(400.0)  # 4 × 100 kWh in 19:00-20:00
    assert m[0]["price"] == 30.0 and m[0]["unit"] == "kW" and m[0]["price_unit"] == "yuan/kW·month"
    assert m[0]["cost_yuan"] == pytest.approx(12_000.0)
    assert "computed" in str(m[0]["price_basis"]) and "2024-07-15T11:00:00+00" in str(m[0]["price_basis"])

    # a meter that reports its maximum demand register is believed
    other = make_db()  # type: ignore[operator]
    fid2 = seed(other, unique_id, tmp_path, max_demand=420.0)
    m2 = rows(other, "SELECT * FROM v_firm_cost_monthly WHERE firm_id = %s AND period = 'demand'", fid2)
    assert m2[0]["quantity"] == pytest.approx(420.0) and m2[0]["cost_yuan"] == pytest.approx(12_600.0)
    assert "reported" in str(m2[0]["price_basis"])


def test_capacity_charge_by_transformer_kva(db: str, unique_id: str, tmp_path: Path) -> None:
    fid = seed(db, unique_id, tmp_path, basis="capacity")
    m = rows(db, "SELECT * FROM v_firm_cost_monthly WHERE firm_id = %s AND carrier = 'electricity'", fid)
    cap = [r for r in m if r["period"] == "capacity"]
    assert len(cap) == 1 and not [r for r in m if r["period"] == "demand"]
    assert (cap[0]["quantity"], cap[0]["unit"], cap[0]["price"]) == (630.0, "kVA", 20.0)
    assert cap[0]["cost_yuan"] == pytest.approx(12_600.0)
    energy = sum(float(r["cost_yuan"]) for r in m if r["period"] in EXPECTED_YUAN)
    assert energy == pytest.approx(2678.0, abs=1e-6)


def test_a_day_without_a_tariff_shows_its_energy_unpriced(db: str, unique_id: str, tmp_path: Path) -> None:
    with psycopg.connect(db) as conn:
        dev = register_park(conn, unique_id)
        load_day(conn, day_rows(dev))
    r = rows(
        db,
        "SELECT * FROM v_firm_cost_daily WHERE firm_id = %s AND carrier = 'electricity' AND day = %s",
        firm_id(unique_id),
        DAY,
    )
    assert len(r) == 1 and r[0]["period"] == "unpriced"
    assert r[0]["quantity"] == pytest.approx(3830.0) and r[0]["cost_yuan"] is None


TS_URL = os.environ.get("PARKPULSE_TEST_TIMESCALE_URL")


@pytest.fixture
def ts_dsn() -> Iterator[str]:
    """A fresh database on the real TimescaleDB server (as tests/kernel/test_timescale_real.py)."""
    if not TS_URL:
        pytest.skip("PARKPULSE_TEST_TIMESCALE_URL is not set (no TimescaleDB here)")
    name = f"pp_ts_costs_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    dsn = server_dsn(TS_URL, name)
    migrate(dsn)
    yield dsn
    with psycopg.connect(server_dsn(TS_URL, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.timescale
def test_the_cost_views_agree_on_the_timescaledb_path(
    db: str, ts_dsn: str, unique_id: str, tmp_path: Path
) -> None:
    with psycopg.connect(ts_dsn) as conn:
        assert conn.execute("SELECT value FROM store_info WHERE key = 'path'").fetchone() == ("timescale",)
    results = []
    for dsn in (db, ts_dsn):
        fid = seed(dsn, unique_id, tmp_path, valley_until=7)
        results.append(
            [
                rows(dsn, f"SELECT * FROM {view} WHERE firm_id = %s ORDER BY {order}", fid)
                for view, order in (
                    ("v_firm_cost_daily", "day, carrier, period"),
                    ("v_firm_cost_monthly", "month, carrier, period, price"),
                    ("v_firm_tou_register_check", "day, period"),
                )
            ]
        )
    plain, ts = results
    assert plain[0] and plain[1] and plain[2]
    for a, b in zip(plain, ts, strict=True):
        assert len(a) == len(b)
        for ra, rb in zip(a, b, strict=True):
            assert ra.keys() == rb.keys()
            for k in ra:
                if isinstance(ra[k], float):
                    assert rb[k] == pytest.approx(ra[k], abs=1e-6), k
                else:
                    assert ra[k] == rb[k], k
    elec_ts = {
        r["period"]: r["cost_yuan"] for r in ts[0] if r["carrier"] == "electricity" and r["day"] == DAY
    }
    assert elec_ts == pytest.approx(EXPECTED_YUAN, abs=1e-6)
