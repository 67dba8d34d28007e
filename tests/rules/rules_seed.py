"""Seeding helpers for the rules tests and the benchmark: registry + COPY readings + rollups."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

import psycopg

TZ = ZoneInfo("Asia/Shanghai")

METRIC_IDS = {
    "elec_import_kwh": 1,
    "elec_export_kwh": 2,
    "gas_volume_m3": 20,
    "steam_mass_t": 21,
    "water_volume_m3": 22,
    "heat_gj": 23,
    "water_reused_m3": 25,
    "good_count": 40,
    "reject_count": 41,
    "machine_state": 42,
    "ideal_rate_pcs_h": 43,
    "active_power_kw": 4,
}


def local(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=TZ)


def device_pks(conn: psycopg.Connection) -> dict[tuple[str, str], int]:
    return {(g, d): pk for pk, g, d in conn.execute("SELECT device_pk, gateway_id, device_id FROM devices")}


def write_readings(
    conn: psycopg.Connection, rows: Iterable[tuple[int, int, datetime, float | None, int]]
) -> int:
    """COPY readings like the ingest service does, mark their 15-minute buckets dirty, commit."""
    rows = list(rows)
    months = {datetime(r[2].year, r[2].month, 1, tzinfo=r[2].tzinfo) for r in rows}
    for m in sorted(months):
        conn.execute("SELECT pp_ensure_partition(%s)", (m,))
        conn.execute("SELECT pp_ensure_partition(%s)", (m.replace(day=28),))
    with conn.cursor().copy("COPY readings (device_pk, metric_id, ts, value, quality) FROM STDIN") as cp:
        for r in rows:
            cp.write_row(r)
    conn.execute(
        "INSERT INTO rollup_dirty SELECT DISTINCT date_bin('15 minutes', t, '2000-01-01') FROM unnest(%s::timestamptz[]) t",
        ([r[2] for r in rows],),
    )
    conn.commit()
    return len(rows)
