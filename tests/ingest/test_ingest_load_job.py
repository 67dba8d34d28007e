"""The interim main job: `parkpulse ingest load` publishes a synthetic park and prints what was stored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ingest_testkit import q1

ROOT = Path(__file__).resolve().parents[2]


def test_load_job_stores_everything_and_says_so(db: str) -> None:
    env = {**os.environ, "PARKPULSE_DATABASE_URL": db, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ingest",
            "load",
            "--private-broker",
            "--firms",
            "3",
            "--meters",
            "2",
            "--readings",
            "24000",
            "--per-message",
            "400",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "readings stored" in out and "24,000" in out
    lines = {
        ln.split("│")[1].strip(): ln.split("│")[2].strip() for ln in out.splitlines() if ln.count("│") >= 3
    }
    assert lines["readings stored"] == "24,000" and lines["lost"] == "0" and lines["duplicates"] == "0"
    assert lines["batches"] == "60"
    assert q1(db, "SELECT count(*) FROM readings") == 24_000
