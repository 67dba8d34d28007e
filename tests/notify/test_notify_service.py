"""The service end to end against a real PostgreSQL and the local stand-ins: subscriptions by role,
park, kind and severity; zh / en content with links; grouping; quiet hours; a channel that is
down then back (nothing lost, nothing doubled); a dead channel on the health view and /metrics."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
from conftest import channel_specs, fire, run_service, settings, setup_park
from notify_standins import SECRETS, HttpStandIn, SmtpStandIn

from notify import NotifyService

LINK = re.compile(r"https://console\.park\.example/alerts/(\d+)")


def _ids(texts: list[str]) -> list[int]:
    return sorted(int(m) for t in texts for m in LINK.findall(t))


def _one(dsn: str, q: str, *args: object) -> object:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(q, args).fetchone()
        return row[0] if row else None


def test_a_critical_alert_reaches_every_channel_once(
    db: str, unique_id: str, http_standin: HttpStandIn, smtp_standin: SmtpStandIn
) -> None:
    setup_park(db, unique_id, channel_specs(http_standin, smtp_standin))
    (aid,) = fire(db, unique_id, 1, severity="critical")
    s = settings(db)

    def done() -> bool:
        return len(http_standin.received) == 3 and len(smtp_standin.messages) == 1

    run_service(s, done)
    assert done(), (http_standin.received, http_standin.rejected)
    for ch in ("wecom", "dingtalk"):
        (r,) = http_standin.of(ch)
        assert "[严重] 排放超标 · 示范园区" in r.text and _ids([r.text]) == [aid]
    (sms,) = http_standin.of("sms")  # li.wei's SMS contact is in English
    assert sms.text.startswith("[CRITICAL] emission exceedance · Demo Park")
    assert "NOx 45 mg/m³ above the limit 30" in sms.text and _ids([sms.text]) == [aid]
    ((_, rcpt, mail),) = smtp_standin.messages
    assert rcpt == ["li.wei@park.example"] and "华能锅炉厂" in mail.get_body().get_content()  # type: ignore[attr-defined]
    # restarted, the service sends nothing again; an event nobody subscribed to (resolved) neither
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("SELECT pp_alert_act(%s, 'li.wei', 'resolve', 'done')", (aid,))
    run_service(s, lambda: False, timeout=1.5)
    assert len(http_standin.received) == 3 and len(smtp_standin.messages) == 1
    assert _one(db, "SELECT count(*) FROM notify_messages WHERE state = 'sent'") == 4
    assert _one(db, "SELECT count(*) FROM notify_attempts WHERE ok AND finished_at IS NOT NULL") == 4
    assert _one(db, "SELECT array_agg(DISTINCT status) FROM v_notify_channel_health") == ["ok"]


def test_a_burst_is_grouped_per_park_and_kind(db: str, unique_id: str, http_standin: HttpStandIn) -> None:
    specs = {k: v for k, v in channel_specs(http_standin, None).items() if k == "wecom-ops"}
    setup_park(db, unique_id, specs)
    ids = fire(db, unique_id, 20) + fire(db, unique_id, 3, kind="data_gap", start=100)
    fire(db, unique_id, 5, severity="info", start=200)  # below the subscription's minimum (warning)
    run_service(settings(db, group_window_s=1.0), lambda: len(http_standin.of("wecom")) >= 2)
    run_service(settings(db, group_window_s=1.0), lambda: False, timeout=1.0)
    got = http_standin.of("wecom")
    assert len(got) == 2
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT form, group_key, alert_ids FROM v_notify_deliveries WHERE state = 'sent' ORDER BY message_id"
        ).fetchall()
    # all 23 alerts were taken in one pass: each (park, kind) goes out as one group message
    assert [(f, k) for f, k, _ in rows] == [
        ("group", f"{unique_id}|emission"),
        ("group", f"{unique_id}|data_gap"),
    ]
    assert sorted(a for _, _, alerts in rows for a in alerts) == sorted(
        ids
    )  # every alert once, no info alert
    emission = next(r.text for r in got if "排放超标 × 20" in r.text)
    assert len(_ids([emission])) == 10 and "另有 10 条" in emission


def test_quiet_hours_hold_non_critical_then_send_a_digest(
    db: str, unique_id: str, http_standin: HttpStandIn
) -> None:
    specs = {k: v for k, v in channel_specs(http_standin, None).items() if k == "ding-ops"}
    contacts = setup_park(db, unique_id, specs)
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    quiet_end = now + timedelta(seconds=4)  # quiet hours that end in a few seconds
    with psycopg.connect(db) as conn:
        conn.execute(
            "UPDATE notify_contacts SET quiet_start = %s, quiet_end = %s WHERE contact_id = %s",
            ((now - timedelta(hours=1)).time(), quiet_end.time(), contacts["ding-ops"]),
        )
    warn = fire(db, unique_id, 3) + fire(db, unique_id, 1, kind="tamper", start=50)
    (crit,) = fire(db, unique_id, 1, severity="critical", start=99)
    s = settings(db)
    run_service(
        s, lambda: datetime.now(ZoneInfo("Asia/Shanghai")) >= quiet_end - timedelta(seconds=0.5), timeout=6
    )
    (only,) = http_standin.of("dingtalk")
    assert _ids([only.text]) == [crit]  # critical at once, in quiet hours; the rest held
    run_service(s, lambda: len(http_standin.of("dingtalk")) >= 2)
    run_service(s, lambda: False, timeout=0.5)
    _first, digest = http_standin.of("dingtalk")
    assert "告警汇总(4 条)" in digest.body["markdown"]["title"] and _ids([digest.text]) == sorted(warn)


def test_channel_down_then_back_nothing_lost_nothing_doubled(
    db: str, unique_id: str, http_standin: HttpStandIn
) -> None:
    specs = {k: v for k, v in channel_specs(http_standin, None).items() if k == "wecom-ops"}
    setup_park(db, unique_id, specs)
    ids = fire(db, unique_id, 4, severity="critical")
    http_standin.down = {"wecom"}
    s = settings(db, backoff_base_s=0.05, backoff_max_s=0.2, max_attempts=100)
    # 12 failed attempts (3 per message), under the robot's 20 a minute
    run_service(s, lambda: (_one(db, "SELECT count(*) FROM notify_attempts WHERE NOT ok") or 0) >= 12)  # type: ignore[operator]
    assert http_standin.received == []
    assert _one(db, "SELECT status FROM v_notify_channel_health") == "dead"  # ≥ 5 failures in a row
    errors = _one(db, "SELECT string_agg(error, ' | ') FROM notify_attempts")
    assert isinstance(errors, str) and "HTTP 503" in errors and "key=***" in errors
    assert not any(sec in errors for sec in SECRETS)
    http_standin.down = set()
    run_service(s, lambda: _one(db, "SELECT count(*) FROM notify_messages WHERE state = 'pending'") == 0)
    run_service(s, lambda: False, timeout=0.5)
    assert _ids([r.text for r in http_standin.of("wecom")]) == sorted(ids)  # each once
    assert _one(db, "SELECT status FROM v_notify_channel_health") == "ok"
    assert _one(db, "SELECT min(attempts) FROM notify_messages") > 1  # type: ignore[operator]


def test_a_message_given_up_marks_the_channel_dead_on_health_and_metrics(
    db: str, unique_id: str, http_standin: HttpStandIn
) -> None:
    specs = {k: v for k, v in channel_specs(http_standin, None).items() if k == "wecom-ops"}
    setup_park(db, unique_id, specs)
    fire(db, unique_id, 1, severity="critical")
    http_standin.down = {"wecom"}
    s = settings(db, max_attempts=2, backoff_base_s=0.05)
    svc = run_service(s, lambda: _one(db, "SELECT state FROM notify_messages") == "dead")
    assert _one(db, "SELECT state FROM notify_messages") == "dead"
    assert _one(db, "SELECT status || ':' || dead_since_success FROM v_notify_channel_health") == "dead:1"
    assert svc.deliverer.stats.dead == 1
    text = asyncio.run(NotifyService(s).metrics_text())
    assert 'parkpulse_notify_channel_up{channel="wecom-ops",kind="wecom"} 0' in text
    assert "parkpulse_notify_channel_failures_in_row" in text
    assert not any(sec in text for sec in SECRETS)
