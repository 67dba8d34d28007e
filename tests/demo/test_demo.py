"""`parkpulse demo`, run briefly as a newcomer would, end to end on this machine's services."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

import psycopg
import pytest

from parkpulse.db import server_dsn
from parkpulse.services import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _summary(workdir: Path) -> dict[str, dict[str, object]]:
    try:
        return json.loads((workdir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def test_demo_runs_every_stage_and_stops_cleanly(tmp_path: Path, pg_admin: str, unique_id: str) -> None:
    workdir = tmp_path / "demo"
    dbname = f"pp_demo_{unique_id}"
    port = free_port()
    exe = Path(sys.executable).parent / "parkpulse"
    env = {**os.environ, "PARKPULSE_DATABASE_URL": server_dsn(pg_admin, "postgres"), "COLUMNS": "120"}
    log = tmp_path / "demo.log"
    logfh = log.open("wb")
    proc = subprocess.Popen(
        [
            str(exe),
            "demo",
            "--duration",
            "45",
            "--history-from",
            str(date.today().year - 1),
            "--workdir",
            str(workdir),
            "--database",
            dbname,
            "--console-port",
            str(port),
            "--outage-after",
            "10",
            "--outage-for",
            "15",
        ],
        env=env,
        stdout=logfh,
        stderr=subprocess.STDOUT,
    )
    logfh.close()
    try:
        # while it runs live, the console answers
        deadline = time.monotonic() + 900
        while "rules" not in _summary(workdir) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        assert proc.poll() is None, (
            "demo exited before running live:\n" + log.read_text(errors="replace")[-3000:]
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as resp:
            assert resp.status == 200
            assert "ParkPulse" in resp.read().decode()
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
    text = log.read_text(encoding="utf-8", errors="replace")
    assert proc.returncode == 0, text[-3000:]
    assert "demo stopped cleanly" in text
    assert "console:" in text and "scorecard" in text
    # the admin password is printed once, to the person who started the demo, and is in no log or file it wrote
    shown = re.search(r"^console: \S+\s+user \S+\s+password (\S+)\s*$", text, re.MULTILINE)
    assert shown, text[-3000:]
    password = shown[1]
    assert text.count(password) == 1
    for f in [workdir / "summary.json", *(workdir / "logs").rglob("*")]:
        if f.is_file():
            assert password.encode() not in f.read_bytes(), f"{f} holds the admin password"

    s = _summary(workdir)
    assert s["simulators"]["devices"] >= 25
    assert s["registry"]["firms"] >= 12
    assert s["history"]["readings"] > 100_000
    live = s["live"]
    assert live["outage"] == "restored", "the gateway's uplink outage was not played out"
    assert live["live_readings"] > 1000, "no live readings from the gateways"
    assert live["classes"] >= 9, "no A/B/C classes evaluated"
    assert live["compliance"] > 0 and live["scorecard"] > 0
    assert live["alerts"] > 0
    assert live["dead_letters"] == 0
    try:
        with psycopg.connect(server_dsn(pg_admin, dbname)) as conn:
            # every firm's boundary meters have energy on most days of last year
            days = conn.execute(
                "SELECT count(DISTINCT day) FROM v_firm_energy_daily WHERE carrier = 'electricity' "
                "AND extract(year FROM day) = %s",
                (date.today().year - 1,),
            ).fetchone()
            assert days is not None and days[0] >= 360
            # the gateway behind the cut uplink lost nothing: its batches arrived without a gap
            gaps = conn.execute(
                "SELECT count(*) FROM seq_gaps WHERE gateway_id = %s AND filled_at IS NULL",
                (s["services"]["outage_gateway"],),
            ).fetchone()
            assert gaps == (0,)
            # last year's smart-transformation coverage comes from the history lines: huaxin-smt and
            # tianyi-winding pass every indicator (OEE 0.88 × 0.92 × 0.985 ≈ 0.80), zhongyu-machining's weak
            # line fails OEE (0.70 × 0.78 × 0.96 ≈ 0.52 < 0.6) → 2 of the 12 above-scale firms = 16.67 %
            cov = conn.execute(
                "SELECT value FROM v_park_scorecard WHERE indicator = 'smart_transformation_coverage_pct' AND year = %s",
                (date.today().year - 1,),
            ).fetchone()
            assert cov is not None and float(cov[0]) == pytest.approx(200 / 12)
            verdicts = dict(
                conn.execute(
                    "SELECT workshop_id, verdict FROM v_compliance WHERE scheme = 'smart_workshop' AND year = %s "
                    "AND month IS NULL AND workshop_id IN ('huaxin-smt', 'tianyi-winding', 'zhongyu-machining')",
                    (date.today().year - 1,),
                ).fetchall()
            )
            assert verdicts == {"huaxin-smt": "pass", "tianyi-winding": "pass", "zhongyu-machining": "fail"}
            assert "smart_transformation_coverage_pct = above-scale firms" in text
            # no process of the demo is left running
            assert conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            ).fetchone() == (0,)
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
