"""A small fixture month for the report tests and the benchmark: a park with firms, November 2025.

Registry through the kernel's import, readings by COPY as ingest writes them (parkpulse.synthetic),
rollups by the refresher, the tariff from costs' shipped file, and rules results and alerts written
the way their services write them (firm_kpi_results rows with the coefficients in the explanation;
pp_alert_fire, then the alert's times moved into the month)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from costs import DEFAULT_TARIFFS_FILE, Assignment, assign_tariff, load_tariffs, sync_tariffs
from parkpulse.db import refresh_rollups
from parkpulse.registry import Device, Firm, Gateway, ParkFile, ParkInfo, import_registry
from parkpulse.synthetic import write_readings

TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2025, 11, 1, tzinfo=TZ)
END = datetime(2025, 12, 1, tzinfo=TZ)
KWH_PER_SLOT = 10.0  # firm A: 10 kWh every 15 minutes
GAS_PER_HOUR = 2.0  # firm A: 2 m3 every hour
GAP_DAY = 10  # firm A's meter sends nothing on 10 November
COEF = {"electricity": (0.1229, "kgce/kWh"), "natural_gas": (1.2143, "kgce/m3")}


def park_file(park: str, firms: int = 2) -> ParkFile:
    out = []
    for i in range(firms):
        fid = f"{park}-f{i}"
        devices = [Device(id="main", kind="meter", meter_level=1, carrier="electricity", poll_interval_s=900)]
        if i == 0:
            devices.append(
                Device(id="gas", kind="meter", meter_level=1, carrier="natural_gas", poll_interval_s=3600)
            )
        out.append(
            Firm(
                id=fid,
                name=f"测试企业{i}",
                name_en=f"Test firm {i}",
                land_mu=50.0,
                gateways=[Gateway(id=f"{fid}-g", devices=devices)],
            )
        )
    return ParkFile(park=ParkInfo(id=park, name="报表园区", name_en="Report park"), firms=out)


def seed(dsn: str, park: str, firms: int = 2, tariff_for: int = 1) -> None:
    """`firms` firms; the first `tariff_for` get the shipped Henan TOU tariff, the rest none."""
    with psycopg.connect(dsn) as conn:
        import_registry(conn, park_file(park, firms))
        pks = {
            (g, d): pk for pk, g, d in conn.execute("SELECT device_pk, gateway_id, device_id FROM v_devices")
        }
        mid: dict[str, int] = dict(conn.execute("SELECT name, metric_id FROM metrics").fetchall())
        rows = []
        for i in range(firms):
            gw = f"{park}-f{i}-g"
            t, v = START, 1000.0
            while t <= END:
                if t.astimezone(TZ).day != GAP_DAY or t.month != 11:
                    rows.append((pks[(gw, "main")], mid["elec_import_kwh"], t, v, 0))
                t += timedelta(minutes=15)
                v += KWH_PER_SLOT * (1 + i)
            if i == 0:
                t, v = START, 50.0
                while t <= END:
                    rows.append((pks[(gw, "gas")], mid["gas_volume_m3"], t, v, 0))
                    t += timedelta(hours=1)
                    v += GAS_PER_HOUR
        write_readings(conn, rows)
        while refresh_rollups(conn) > 0:
            pass
        sync_tariffs(conn, load_tariffs(DEFAULT_TARIFFS_FILE))
        for i in range(tariff_for):
            assign_tariff(
                conn,
                Assignment(f"{park}-f{i}", "henan-industrial-tou", date(2025, 1, 1), voltage_class="kv1_10"),
            )
        _results(conn, park, firms)
        conn.commit()


def _results(conn: psycopg.Connection, park: str, firms: int) -> None:
    carriers = [
        {
            "carrier": c,
            "unit": u.split("/")[1],
            "in_total": True,
            "coefficients": {"dangliang": {"value": v, "unit": u}},
        }
        for c, (v, u) in COEF.items()
    ]
    for i in range(firms):
        conn.execute(
            """INSERT INTO firm_kpi_results (firm_id, year, park_id, rule_set, rule_version, energy_tce,
                   intensity_tce_per_10k_cny, intensity_change_pct, mu_tax_10k_cny, mu_added_value_10k_cny, score,
                   class, explanation)
               VALUES (%s, 2025, %s, 'henan-2025', '7', %s, 0.25, -4.5, 12.5, 30.0, 88.0, %s, %s)""",
            (
                f"{park}-f{i}",
                park,
                100.0 + i,
                "A" if i == 0 else "B",
                json.dumps({"energy": {"carriers": carriers}}),
            ),
        )
    conn.execute(
        """INSERT INTO park_scorecard_results (park_id, year, indicator, rule_set, rule_version, value, target, unit, met)
           VALUES (%s, 2025, 'mu_tax', 'henan-2025', '7', 12.5, 15, '万元/亩', false)""",
        (park,),
    )


def fire_emission_alert(
    conn: psycopg.Connection, park: str, opened: datetime, resolved: datetime | None
) -> int:
    """An emission alert on firm 0's stack, as the alert engine raises it, with stack-hours judged."""
    fid, gw = f"{park}-f0", f"{park}-f0-g"
    conn.execute(
        "INSERT INTO devices (gateway_id, device_id, kind, source_type, poll_interval_s) "
        "VALUES (%s, 'cems-1', 'cems', 'gas_boiler', 60) ON CONFLICT DO NOTHING",
        (gw,),
    )
    row = conn.execute(
        """SELECT pp_alert_fire('emission-nox-hourly', 1, 'emission', 'critical', %s, %s, %s, 'cems-1', 'nox_mg_m3',
                  %s, 182.5, 100, 'mg/m³', '氮氧化物超标', 'NOx above limit', '{}'::jsonb, %s)""",
        (park, fid, gw, f"{gw}/cems-1/nox_mg_m3/{opened.isoformat()}", opened),
    ).fetchone()
    assert row is not None
    aid = int(row[0])
    if resolved is not None:
        conn.execute("SELECT pp_alert_clear(%s)", (aid,))
    conn.execute(
        "UPDATE alerts SET opened_at = %s, resolved_at = %s WHERE alert_id = %s", (opened, resolved, aid)
    )
    pk = conn.execute(
        "SELECT device_pk FROM v_devices WHERE gateway_id = %s AND device_id = 'cems-1'", (gw,)
    ).fetchone()
    assert pk is not None
    end = resolved or opened + timedelta(hours=6)
    h, n = opened, 0
    while h < end:
        valid = n % 3 != 2  # every third hour lacks valid minutes
        conn.execute(
            """INSERT INTO alert_emission_hours (device_pk, metric, hour, n_readings, valid_minutes, excluded, valid,
                   limit_value, exceeded, rule_id, rule_version)
               VALUES (%s, 'nox_mg_m3', %s, 60, %s, 0, %s, 100, %s, 'emission-nox-hourly', 1)""",
            (pk[0], h, 52 if valid else 20, valid, n % 2 == 0),
        )
        h += timedelta(hours=1)
        n += 1
    return aid
