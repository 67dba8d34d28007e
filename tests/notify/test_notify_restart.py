"""The service as a process (`python -m notify serve`), stopped mid-delivery: by SIGTERM (it
finishes what is in flight: nothing lost, nothing doubled) and by SIGKILL (nothing lost; a message
is sent again only if its attempt was cut short, and the audit shows each such attempt). Its log,
written while a robot answers errors that echo the request, holds none of the channels' secrets."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from conftest import channel_specs, fire, setup_park
from notify_standins import SECRETS, HttpStandIn

from notify import add_subscription

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"https://console\.park\.example/alerts/(\d+)")


def _start(db: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARKPULSE_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "PARKPULSE_NOTIFY_DATABASE_URL": db,
        "PARKPULSE_NOTIFY_START": "beginning",
        "PARKPULSE_NOTIFY_CONSOLE_URL": "https://console.park.example",
        "PARKPULSE_NOTIFY_POLL_S": "0.05",
        "PARKPULSE_NOTIFY_GROUP_WINDOW_S": "0",
        "PARKPULSE_NOTIFY_BACKOFF_BASE_S": "1.0",
        "PARKPULSE_NOTIFY_CONCURRENCY": "4",
        "PARKPULSE_NOTIFY_LEASE_S": "2",
    }
    with log.open("ab") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "notify", "serve"], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT
        )


def _wait(cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        time.sleep(0.05)
    assert cond(), "timed out"


def _counts(http: HttpStandIn, channel: str) -> Counter[int]:
    return Counter(int(m) for r in http.of(channel) for m in LINK.findall(r.text))


@pytest.mark.slow
def test_stopped_mid_delivery_nothing_lost_nothing_doubled(
    db: str, unique_id: str, http_standin: HttpStandIn, tmp_path: Path
) -> None:
    specs = {k: v for k, v in channel_specs(http_standin, None).items() if k in ("sms", "ding-ops")}
    contacts = setup_park(db, unique_id, specs)
    with psycopg.connect(db) as conn:  # the robot: tamper alerts only (it is capped at 20 a minute)
        conn.execute("DELETE FROM notify_subscriptions WHERE contact_id = %s", (contacts["ding-ops"],))
        add_subscription(conn, contact_id=contacts["ding-ops"], kinds=["tamper"])
    ding_ids = fire(
        db, unique_id, 5, kind="tamper", severity="critical", start=100
    )  # first: tried while down
    sms_ids = fire(db, unique_id, 25, severity="critical")
    http_standin.delay_s = 0.15
    http_standin.down = {"dingtalk"}
    log = tmp_path / "notify.log"

    proc = _start(db, log)
    try:
        _wait(lambda: len(http_standin.of("sms")) >= 6, 30)
        proc.send_signal(signal.SIGTERM)  # graceful: in-flight sends finish and are recorded
        assert proc.wait(15) == 0
        after_term = _counts(http_standin, "sms")
        assert after_term and max(after_term.values()) == 1
        with psycopg.connect(db) as conn:
            unfinished = conn.execute(
                "SELECT count(*) FROM notify_attempts WHERE finished_at IS NULL"
            ).fetchone()
        assert unfinished == (0,)

        proc = _start(db, log)
        _wait(lambda: len(http_standin.of("sms")) >= len(after_term) + 6, 30)
        proc.kill()  # abrupt: what was in flight is unknown to the database
        proc.wait(10)
        http_standin.down = set()

        proc = _start(db, log)
        _wait(lambda: set(_counts(http_standin, "sms")) == set(sms_ids + ding_ids), 40)  # li.wei: every kind
        _wait(lambda: set(_counts(http_standin, "dingtalk")) == set(ding_ids), 40)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    with psycopg.connect(db) as conn:
        cut = conn.execute("SELECT count(*) FROM notify_attempts WHERE finished_at IS NULL").fetchone()
        states: dict[str, int] = dict(
            conn.execute("SELECT state, count(*) FROM notify_messages GROUP BY 1").fetchall()
        )
        items = conn.execute(
            "SELECT count(*), count(DISTINCT (event_id, contact_id)) FROM notify_items"
        ).fetchone()
    assert states == {"sent": 35} and items == (35, 35)
    sms = _counts(http_standin, "sms")
    doubled = sum(n - 1 for n in sms.values())
    assert cut is not None and doubled <= cut[0], (sms, cut)  # only attempts the kill cut short
    assert all(n == 1 for n in _counts(http_standin, "dingtalk").values())
    text = log.read_text(encoding="utf-8", errors="replace")
    assert "HTTP 503" in text and "access_token=***" in text  # the robot's echo, redacted
    for secret in SECRETS:
        assert secret not in text, f"the log shows {secret!r}"
