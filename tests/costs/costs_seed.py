"""The cost tests' fixture: a test tariffs file with round prices and one firm's metered day.

The day is 2024-07-15 in Asia/Shanghai. The boundary meter reads every 5 minutes at a power
that is constant within each local hour, so the hand-computed figures below are exact:

| hours  | period | kW  | kWh  | yuan/kWh | yuan |
|--------|--------|-----|------|----------|------|
| 0-8    | valley | 100 | 800  | 0.3      | 240  |
| 8-12   | peak   | 200 | 800  | 0.9      | 720  |
| 12-17  | flat   | 150 | 750  | 0.6      | 450  |
| 17-19  | peak   | 300 | 600  | 0.9      | 540  |
| 19-20  | sharp  | 400 | 400  | 1.1      | 440  |
| 20-24  | flat   | 120 | 480  | 0.6      | 288  |

valley 800 kWh / 240 yuan, peak 1400 / 1260, flat 1230 / 738, sharp 400 / 440: 3830 kWh, 2678 yuan.
Prices: floating 0.5 × ratio (sharp 2.0, peak 1.6, flat 1.0, valley 0.4) + fixed 0.1.
The largest 15-minute energy is 100 kWh (19-20 h): a computed maximum demand of 400 kW.
Gas: 250 m³ in the day at 3.5 yuan/m³ = 875 yuan. Water is metered but has no tariff.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from parkpulse.catalogue import load_catalogue
from parkpulse.db import refresh_rollups
from parkpulse.registry import Device, Firm, Gateway, ParkFile, ParkInfo, import_registry
from parkpulse.synthetic import ReadingRow, write_readings

TZ = ZoneInfo("Asia/Shanghai")
DAY = datetime(2024, 7, 15, tzinfo=TZ)

# (first hour, last hour exclusive, kW, period)
PROFILE = [
    (0, 8, 100.0, "valley"),
    (8, 12, 200.0, "peak"),
    (12, 17, 150.0, "flat"),
    (17, 19, 300.0, "peak"),
    (19, 20, 400.0, "sharp"),
    (20, 24, 120.0, "flat"),
]
EXPECTED_KWH = {"valley": 800.0, "peak": 1400.0, "flat": 1230.0, "sharp": 400.0}
EXPECTED_YUAN = {"valley": 240.0, "peak": 1260.0, "flat": 738.0, "sharp": 440.0}
PRICES = {"sharp": 1.1, "peak": 0.9, "flat": 0.6, "valley": 0.3}

TEST_TARIFFS = """
version: 1
voltage_classes:
  kv1_10: {zh: 1-10千伏, en: 1-10 kV}
  kv35: {zh: 35千伏, en: 35 kV}
register_check: {tolerance_pct: 2.0, tolerance_kwh: 1.0, source: test}
tariffs:
  - id: test-tou
    carrier: electricity
    name_zh: 测试分时电价
    name_en: test time-of-use tariff
    versions:
      - version: v1
        valid_from: 2024-01-01
        valid_to: 2024-08-01
        source: test figures
        verified: true
        schedule:
          - months: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
            sharp: ["19:00-20:00"]
            peak: ["08:00-12:00", "17:00-19:00"]
            valley: ["00:00-08:00"]
        ratios: {sharp: 2.0, peak: 1.6, flat: 1.0, valley: 0.4, source: test, verified: true}
        energy_prices:
          - from_month: 2024-01
            source: test
            verified: true
            classes:
              kv1_10: {floating: 0.5, fixed: 0.1}
              kv35: {floating: 0.5, fixed: 0.05}
        two_part:
          source: test
          verified: true
          classes:
            kv1_10: {demand_yuan_per_kw_month: 30.0, capacity_yuan_per_kva_month: 20.0}
      - version: v2
        valid_from: 2024-08-01
        source: test figures, the next structure
        verified: false
        schedule:
          - months: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
            peak: ["18:00-22:00"]
            valley: ["00:00-06:00"]
        ratios: {peak: 1.5, valley: 0.5, source: test, verified: false}
        energy_prices:
          - from_month: 2024-08
            source: test
            verified: false
            classes:
              kv1_10: {floating: 0.6}
  - id: test-gas
    carrier: natural_gas
    name_zh: 测试天然气
    name_en: test gas
    versions:
      - version: "2024"
        valid_from: 2024-01-01
        source: test
        verified: true
        unit: m3
        unit_prices:
          - {from_month: 2024-01, price: 3.5}
"""


def write_test_tariffs(tmp_path: Path, text: str = TEST_TARIFFS) -> Path:
    p = tmp_path / "tariffs.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def firm_id(park: str) -> str:
    return f"{park}-f1"


def register_park(conn: psycopg.Connection, park: str) -> dict[str, int]:
    """One firm: boundary meter m1 (with per-tariff registers), sub-meter m2, gas and water meters."""
    devices = [
        Device(id="m1", kind="meter", meter_level=1, carrier="electricity"),
        Device(id="m2", kind="meter", meter_level=2, carrier="electricity"),
        Device(id="gas1", kind="meter", meter_level=1, carrier="natural_gas"),
        Device(id="water1", kind="meter", meter_level=1, carrier="water"),
    ]
    pf = ParkFile(
        park=ParkInfo(id=park, name="成本测试园区", timezone="Asia/Shanghai"),
        firms=[
            Firm(
                id=firm_id(park),
                name="成本测试企业",
                land_mu=10,
                gateways=[Gateway(id=f"{park}-g1", devices=devices)],
            )
        ],
    )
    import_registry(conn, pf)
    conn.commit()
    rows = conn.execute("SELECT device_id, device_pk FROM v_devices WHERE park_id = %s", (park,)).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def _power(hour: int) -> tuple[float, str]:
    return next((kw, period) for a, b, kw, period in PROFILE if a <= hour < b)


def day_rows(
    dev: dict[str, int], *, valley_until: int = 8, max_demand_kw: float | None = None, day: datetime = DAY
) -> list[ReadingRow]:
    """The metered day (see the module docstring), 5-minute readings from 00:00 to 24:00 inclusive.

    The per-tariff registers count valley energy until `valley_until` o'clock and flat after it
    (8: right; 7: a meter whose schedule is wrong by one hour).
    """
    ids = {m.name: m.id for m in load_catalogue().metrics}
    total = 10_000.0
    regs = {"sharp": 50.0, "peak": 60.0, "flat": 70.0, "valley": 80.0}
    rows: list[ReadingRow] = []
    for k in range(24 * 12 + 1):
        ts = day + timedelta(minutes=5 * k)
        rows.append((dev["m1"], ids["elec_import_kwh"], ts, total, 0))
        rows.append((dev["m2"], ids["elec_import_kwh"], ts, 999_000.0 + 77.0 * k, 0))
        for period, value in regs.items():
            rows.append((dev["m1"], ids[f"elec_import_kwh_{period}"], ts, value, 0))
        if max_demand_kw is not None:
            rows.append((dev["m1"], ids["max_demand_kw"], ts, max_demand_kw, 0))
        if k == 24 * 12:
            break
        kw, period = _power(k // 12)
        step = kw * 5 / 60
        total += step
        reg_period = "flat" if period == "valley" and k // 12 >= valley_until else period
        regs[reg_period] += step
    gas, water = ids["gas_volume_m3"], ids["water_volume_m3"]
    rows += [
        (dev["gas1"], gas, day, 1000.0, 0),
        (dev["gas1"], gas, day + timedelta(hours=12), 1100.0, 0),
        (dev["gas1"], gas, day + timedelta(hours=23, minutes=55), 1250.0, 0),
        (dev["water1"], water, day, 10.0, 0),
        (dev["water1"], water, day + timedelta(hours=23), 42.0, 0),
    ]
    return rows


def load_day(conn: psycopg.Connection, rows: list[ReadingRow]) -> None:
    write_readings(conn, rows)
    while refresh_rollups(conn):
        pass
    conn.commit()
