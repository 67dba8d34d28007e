"""智能车间 from telemetry in the database: networking, automatic collection, OEE, energy per unit,
worked by hand; and `rules serve` runs and shuts down cleanly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from rules_seed import device_pks, local, write_readings

from parkpulse.registry import Device, Firm, Gateway, ParkFile, ParkInfo, Workshop, import_registry
from rules._ruleset import load_rule_set
from rules._service import RulesService, run_once

RS = load_rule_set()


def _seed(dsn: str, park: str) -> str:
    fid = f"{park}-f"
    pf = ParkFile(
        park=ParkInfo(id=park, name="园区"),
        firms=[
            Firm(
                id=fid,
                name="智造",
                land_mu=30,
                production_start="2010-01-01",  # type: ignore[arg-type]
                workshops=[
                    Workshop(id=f"{park}-w1", name="装配车间", smart_declared=True),
                    Workshop(id=f"{park}-w2", name="仓库"),
                ],
                gateways=[
                    Gateway(
                        id=f"{park}-g",
                        devices=[
                            Device(id="main", kind="meter", meter_level=1, carrier="electricity"),
                            Device(
                                id="wmeter",
                                kind="meter",
                                meter_level=2,
                                carrier="electricity",
                                workshop=f"{park}-w1",
                            ),
                            Device(id="line1", kind="line", workshop=f"{park}-w1"),
                            Device(id="silent", kind="sensor", workshop=f"{park}-w2"),
                        ],
                    )
                ],
            )
        ],
    )
    with psycopg.connect(dsn) as conn:
        import_registry(conn, pf)
        pk = device_pks(conn)
        g = f"{park}-g"
        main, wm, line = pk[(g, "main")], pk[(g, "wmeter")], pk[(g, "line1")]
        rows: list[tuple[int, int, datetime, float | None, int]] = []
        # February 10th: the workshop meter uses 1 000 kWh for 500 good parts (2 kWh per part)
        feb = local(2025, 2, 10)
        rows += [
            (wm, 1, feb, 0.0, 0),
            (wm, 1, feb + timedelta(hours=23), 1000.0, 0),
            (line, 40, feb, 0.0, 0),
            (line, 40, feb + timedelta(hours=23), 500.0, 0),
            (main, 1, feb, 0.0, 0),
            (main, 1, feb + timedelta(hours=23), 3000.0, 0),
        ]
        # March 10th, one day of 96 fifteen-minute buckets on line1:
        #   32 buckets running (8 h), 8 idle (2 h), 56 planned stop (14 h)
        mar = local(2025, 3, 10)
        states = [2] * 32 + [1] * 8 + [4] * 56
        for i, s in enumerate(states):
            t = mar + timedelta(minutes=15 * i)
            rows.append((line, 42, t, float(s), 0))
            rows.append((line, 43, t, 100.0, 0))  # ideal rate 100 pcs/h
        # counts over the day: good 500 → 1 100 (600 parts), reject 0 → 40
        rows += [
            (line, 40, mar, 500.0, 0),
            (line, 40, mar + timedelta(hours=23, minutes=50), 1100.0, 0),
            (line, 41, mar, 0.0, 0),
            (line, 41, mar + timedelta(hours=23, minutes=50), 40.0, 0),
            (wm, 1, mar, 1000.0, 0),
            (wm, 1, mar + timedelta(hours=23, minutes=50), 2100.0, 1),
            (main, 1, mar, 3000.0, 0),
            (main, 1, mar + timedelta(hours=23, minutes=50), 6300.0, 0),
        ]
        write_readings(conn, rows)
        # every device was installed before the evaluated months (a device registered after a closed
        # period that did not report in it is left out of it: test_devices_registered_after_a_period…)
        conn.execute(
            "UPDATE devices SET registered_at = '2024-12-01T00:00:00+08:00' WHERE gateway_id = %s", (g,)
        )
    return fid


def test_devices_registered_after_a_closed_period_are_left_out_of_it(db: str, unique_id: str) -> None:
    fid = _seed(db, unique_id)
    with psycopg.connect(db) as conn:
        # the silent sensor of w2 was only registered on 2025-04-01 (local), after March ended
        conn.execute(
            "UPDATE devices SET registered_at = '2025-04-01T00:00:00+08:00' "
            "WHERE gateway_id = %s AND device_id = 'silent'",
            (f"{unique_id}-g",),
        )
        # the workshop meter reported in March and was disabled since (replaced, or an import channel)
        conn.execute(
            "UPDATE devices SET enabled = false WHERE gateway_id = %s AND device_id = 'wmeter'",
            (f"{unique_id}-g",),
        )
    run_once(db, RS, 2025, 3)
    with psycopg.connect(db) as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT workshop_id, verdict, detail FROM v_compliance "
                "WHERE firm_id = %s AND year = 2025 AND month = 3 AND scheme = 'smart_workshop'",
                (fid,),
            )
        }
    # March: w2 has no device that existed then → networking has no data (not 0 / 1 = a failure)
    w2 = {i["indicator"]: i for i in rows[f"{unique_id}-w2"][1]["indicators"]}
    assert w2["networking_rate"]["value"] is None and rows[f"{unique_id}-w2"][0] == "insufficient_data"
    # w1 is unchanged: the disabled wmeter was in service in March → 2 / 2 networked, its energy counts, pass
    w1 = {i["indicator"]: i for i in rows[f"{unique_id}-w1"][1]["indicators"]}
    assert w1["networking_rate"]["value"] == 1.0
    assert w1["energy_per_unit_change_pct"]["value"] == pytest.approx((1100 / 600 / 2 - 1) * 100)
    assert rows[f"{unique_id}-w1"][0] == "pass"


def test_smart_workshop_worked_example(db: str, unique_id: str) -> None:
    fid = _seed(db, unique_id)
    run_once(db, RS, 2025, 3)
    with psycopg.connect(db) as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT workshop_id, verdict, score, detail FROM v_compliance "
                "WHERE firm_id = %s AND year = 2025 AND month = 3 AND scheme = 'smart_workshop'",
                (fid,),
            )
        }
    verdict, score, detail = rows[f"{unique_id}-w1"]
    ind = {i["indicator"]: i for i in detail["indicators"]}
    # networking: wmeter and line1 both reported in March → 2 / 2 = 1.0
    assert ind["networking_rate"]["value"] == 1.0
    # automatic collection: 96 x 2 + 4 line count readings + 2 meter readings = 198, one of them manual (quality 1)
    assert ind["auto_collection_rate"]["value"] == pytest.approx(197 / 198)
    # OEE: availability 32 / 40 = 0.8; performance (600 + 40) / (100 pcs/h x 8 h) = 0.8;
    #      quality 600 / 640 = 0.9375 → 0.8 x 0.8 x 0.9375 = 0.6 (threshold 0.6: pass)
    oee = ind["oee"]
    assert oee["how"]["availability"] == pytest.approx(0.8) and oee["how"]["performance"] == pytest.approx(
        0.8
    )
    assert oee["how"]["quality"] == pytest.approx(0.9375) and oee["value"] == pytest.approx(0.6)
    # energy per unit: March 1 100 kWh / 600 = 1.8333 kWh; February 1 000 / 500 = 2 kWh
    #   change = (1.8333 / 2 - 1) x 100 = -8.333 % (kgce factor cancels) → pass (<= 0)
    assert ind["energy_per_unit_change_pct"]["value"] == pytest.approx((1100 / 600 / 2 - 1) * 100)
    assert verdict == "pass" and score == 100.0
    # w2 has one registered sensor that never reported and no line: networking 0 → fail
    w2 = rows[f"{unique_id}-w2"]
    assert w2[0] == "fail"
    assert next(i for i in w2[2]["indicators"] if i["indicator"] == "networking_rate")["value"] == 0.0
    # firm level: one passing workshop is enough (min_passing_workshops 1)
    assert rows[None][0] == "pass"
    # firm-wide energy per good part from the boundary meter: March 3 300 kWh / 600 vs February 3 000 / 500
    #   (5.5 / 6 - 1) x 100 = -8.333 %
    firm_ind = {i["indicator"]: i for i in rows[None][2]["indicators"]}
    assert firm_ind["energy_per_unit_change_pct"]["value"] == pytest.approx(
        (3300 / 600 / (3000 / 500) - 1) * 100
    )
    # the month's firm energy: boundary meter 3 000 → 6 300 kWh in March = 3 300 x 0.1229 = 405.57 kgce
    with psycopg.connect(db) as conn:
        e = conn.execute(
            "SELECT energy_tce FROM firm_energy_month_results WHERE firm_id = %s AND month = 3", (fid,)
        ).fetchone()
    assert e is not None and e[0] == pytest.approx(3300 * 0.1229 / 1000)


async def _serve_once(db: str) -> RulesService:
    svc = RulesService(db, interval_s=3600, drain_s=10, clock=lambda: datetime(2025, 3, 20, tzinfo=UTC))
    stop = asyncio.Event()

    async def stopper() -> None:
        while svc.runs == 0 and svc.last_error is None:
            await asyncio.sleep(0.05)
        stop.set()

    await asyncio.gather(svc.serve(stop), stopper())
    return svc


def test_serve_keeps_the_current_month_and_stops_cleanly(db: str, unique_id: str) -> None:
    fid = _seed(db, unique_id)
    svc = asyncio.run(asyncio.wait_for(_serve_once(db), timeout=60))
    assert svc.last_error is None and svc.runs == 1
    with psycopg.connect(db) as conn:
        months = {r[0] for r in conn.execute("SELECT month FROM rule_runs WHERE year = 2025")}
        assert months == {3, None}  # the month, then the year to date
        kpi = conn.execute("SELECT class FROM v_firm_kpi_year WHERE firm_id = %s", (fid,)).fetchone()
        assert kpi == ("out_of_scope",)  # no economic data imported: listed, not dropped


def test_serve_cli_stops_cleanly_on_sigterm(db: str, unique_id: str) -> None:
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    _seed(db, unique_id)
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "parkpulse.cli", "rules", "serve", "--interval", "3600", "--database-url", db],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        runs = 0
        while time.monotonic() < deadline and runs < 2:  # the current month, then the year to date
            time.sleep(0.2)
            with psycopg.connect(db) as conn:
                runs = conn.execute(
                    "SELECT count(*) FROM rule_runs WHERE finished_at IS NOT NULL"
                ).fetchone()[0]  # type: ignore[index]
        assert runs == 2
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "stopped after 1 evaluation(s)" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_line_states_count_in_the_local_month(db: str, unique_id: str) -> None:
    """April 1st 00:00-01:00 in Asia/Shanghai is March 31st 16:00-17:00 UTC: it belongs to April."""
    fid = _seed(db, unique_id)
    with psycopg.connect(db) as conn:
        line = device_pks(conn)[(f"{unique_id}-g", "line1")]
        apr = local(2025, 4, 1)
        write_readings(conn, [(line, 42, apr + timedelta(minutes=15 * i), 2.0, 0) for i in range(4)])
    run_once(db, RS, 2025, 4)
    with psycopg.connect(db) as conn:
        detail = conn.execute(
            "SELECT detail FROM v_compliance WHERE firm_id = %s AND workshop_id = %s AND month = 4",
            (fid, f"{unique_id}-w1"),
        ).fetchone()[0]  # type: ignore[index]
    oee = next(i for i in detail["indicators"] if i["indicator"] == "oee")
    assert oee["how"]["availability_from"].startswith("4 running / 4 planned")
