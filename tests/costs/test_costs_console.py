"""The console's firm data (page and /api/v1/firms/{id}) carries the cost next to the energy."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from costs_seed import TZ, day_rows, firm_id, load_day, register_park, write_test_tariffs

from console import _queries as q
from console.scope import Scope
from costs import Assignment, assign_tariff, load_tariffs, sync_tariffs


def test_firm_energy_rows_carry_their_cost(db: str, unique_id: str, tmp_path: Path) -> None:
    yesterday = datetime.now(TZ).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    fid = firm_id(unique_id)
    with psycopg.connect(db) as conn:
        dev = register_park(conn, unique_id)
        sync_tariffs(conn, load_tariffs(write_test_tariffs(tmp_path)))
        assign_tariff(conn, Assignment(fid, "test-tou", date(2024, 1, 1), voltage_class="kv1_10"))
        assign_tariff(conn, Assignment(fid, "test-gas", date(2024, 1, 1)))
        load_day(conn, day_rows(dev, day=yesterday))

    async def fetch() -> list[dict[str, object]]:
        async with await psycopg.AsyncConnection.connect(db) as conn:
            rows = await q.firm_energy(conn, Scope("test", None, frozenset({"admin"}), (), ()), fid)
            return [dict(r) for r in rows]

    by_carrier = {r["carrier"]: r for r in asyncio.run(fetch())}
    # version v2 of the test tariff (from 2024-08): peak 18-22 at 0.9, valley 0-6 at 0.3, flat 0.6:
    # 940 kWh × 0.9 + 600 × 0.3 + 2290 × 0.6 = 2400 yuan
    assert by_carrier["electricity"]["cost_recent_yuan"] == pytest.approx(2400.0, abs=1e-6)
    assert by_carrier["natural_gas"]["cost_recent_yuan"] == pytest.approx(875.0)
    assert by_carrier["water"]["cost_recent_yuan"] is None
