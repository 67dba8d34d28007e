"""Contract 3 on the real PostgreSQL: alerts, append-only audit trail, pp_alert_act state rules,
one open alert per rule and subject, NOTIFY payloads, webhook outbox rows, views."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg.types.json import Jsonb

from alerts.harness import sample_park
from parkpulse.registry import import_registry


def _fire(
    conn: psycopg.Connection,
    park: str,
    subject: str = "g/d/nox_mg_m3",
    severity: str = "critical",
    value: float = 250.0,
) -> int:
    row = conn.execute(
        "SELECT pp_alert_fire('r-test', 1, 'emission', %s, %s, %s, 'g', 'd', 'nox_mg_m3', %s, %s, 200, 'mg/m3', "
        "'超标', 'exceeded', %s)",
        (severity, park, f"{park}-f1", subject, value, Jsonb({"valid_minutes": 50})),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def conn(db: str, unique_id: str) -> psycopg.Connection:
    c = psycopg.connect(db, autocommit=True)
    import_registry(c, sample_park(unique_id))
    yield c
    c.close()


def test_fire_is_one_open_alert_per_rule_and_subject(conn: psycopg.Connection, unique_id: str) -> None:
    a = _fire(conn, unique_id)
    b = _fire(conn, unique_id, value=260.0)  # same rule + subject: the open alert is refreshed
    assert a == b
    assert conn.execute("SELECT value FROM alerts WHERE alert_id = %s", (a,)).fetchone() == (260.0,)
    other = _fire(conn, unique_id, subject="g/d/so2_mg_m3")
    assert other != a
    # the database itself refuses a second open alert for the same rule and subject
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            "INSERT INTO alerts (rule_id, rule_version, kind, severity, park_id, subject, message_zh, message_en) "
            "VALUES ('r-test', 1, 'emission', 'critical', %s, 'g/d/nox_mg_m3', 'x', 'x')",
            (unique_id,),
        )
    # once resolved, the same subject may fire again as a new alert
    assert conn.execute("SELECT pp_alert_clear(%s)", (a,)).fetchone() == (True,)
    c = _fire(conn, unique_id)
    assert c != a
    assert conn.execute("SELECT count(*) FROM alerts WHERE subject = 'g/d/nox_mg_m3'").fetchone() == (2,)


def test_pp_alert_act_lifecycle_rules(conn: psycopg.Connection, unique_id: str) -> None:
    a = _fire(conn, unique_id)
    act = "SELECT pp_alert_act(%s, %s, %s, %s)"
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="action"):
        conn.execute(act, (a, "li.wei", "delete", None))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="actor"):
        conn.execute(act, (a, "  ", "acknowledge", None))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="comment"):
        conn.execute(act, (a, "li.wei", "comment", ""))
    with pytest.raises(psycopg.errors.NoDataFound):
        conn.execute(act, (a + 999, "li.wei", "acknowledge", None))
    assert conn.execute(act, (a, "li.wei", "acknowledge", "现场核查中")).fetchone() == ("acknowledged",)
    with pytest.raises(psycopg.errors.CheckViolation, match="acknowledged"):
        conn.execute(act, (a, "wang.fang", "acknowledge", None))  # cannot ack twice
    assert conn.execute(act, (a, "wang.fang", "comment", "企业已停炉")).fetchone() == ("acknowledged",)
    assert conn.execute(act, (a, "wang.fang", "resolve", "处理完毕")).fetchone() == ("resolved",)
    with pytest.raises(psycopg.errors.CheckViolation, match="resolved"):
        conn.execute(act, (a, "li.wei", "acknowledge", None))  # cannot ack a resolved alert
    with pytest.raises(psycopg.errors.CheckViolation, match="resolved"):
        conn.execute(act, (a, "li.wei", "resolve", None))
    assert conn.execute(act, (a, "li.wei", "comment", "归档")).fetchone() == (
        "resolved",
    )  # comments always allowed
    row = conn.execute(
        "SELECT state, acked_by, acked_at IS NOT NULL, resolved_by, resolved_at IS NOT NULL FROM alerts WHERE alert_id = %s",
        (a,),
    ).fetchone()
    assert row == ("resolved", "li.wei", True, "wang.fang", True)
    trail = conn.execute(
        "SELECT actor, action, comment FROM alert_events WHERE alert_id = %s ORDER BY event_id", (a,)
    ).fetchall()
    assert trail == [
        ("system", "fired", None),
        ("li.wei", "acknowledged", "现场核查中"),
        ("wang.fang", "comment", "企业已停炉"),
        ("wang.fang", "resolved", "处理完毕"),
        ("li.wei", "comment", "归档"),
    ]
    # reopen: allowed for a resolved alert while nothing else is open for the subject
    assert conn.execute(act, (a, "li.wei", "reopen", "复查发现仍超标")).fetchone() == ("firing",)
    b = _fire(conn, unique_id)
    assert b == a  # the reopened alert is the open one
    conn.execute(act, (a, "li.wei", "resolve", None))
    _fire(conn, unique_id)  # a new alert is now open for the subject
    with pytest.raises(psycopg.errors.CheckViolation, match="another alert"):
        conn.execute(act, (a, "li.wei", "reopen", None))


def test_automatic_resolve_leaves_resolved_by_null(conn: psycopg.Connection, unique_id: str) -> None:
    a = _fire(conn, unique_id)
    conn.execute("SELECT pp_alert_clear(%s, %s)", (a, Jsonb({"avg_converted": 180.0})))
    assert conn.execute("SELECT state, resolved_by FROM alerts WHERE alert_id = %s", (a,)).fetchone() == (
        "resolved",
        None,
    )
    assert conn.execute("SELECT pp_alert_clear(%s)", (a,)).fetchone() == (False,)  # not open any more


def test_audit_trail_is_append_only(conn: psycopg.Connection, unique_id: str) -> None:
    a = _fire(conn, unique_id)
    conn.execute("SELECT pp_alert_act(%s, 'li.wei', 'comment', 'first')", (a,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        conn.execute("UPDATE alert_events SET comment = 'rewritten' WHERE alert_id = %s", (a,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        conn.execute("DELETE FROM alert_events WHERE alert_id = %s", (a,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        conn.execute("TRUNCATE alert_events CASCADE")
    assert conn.execute("SELECT comment FROM alert_events WHERE action = 'comment'").fetchone() == ("first",)


def test_notify_payload_and_views(db: str, conn: psycopg.Connection, unique_id: str) -> None:
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute("LISTEN pp_alerts")
        a = _fire(conn, unique_id)
        conn.execute("SELECT pp_alert_act(%s, 'li.wei', 'ack', NULL)", (a,))
        got = [json.loads(n.payload) for n in listener.notifies(timeout=2, stop_after=2)]
    assert [(g["alert_id"], g["action"], g["park_id"]) for g in got] == [
        (a, "fired", unique_id),
        (a, "acknowledged", unique_id),
    ]
    row = conn.execute(
        "SELECT park_name, firm_name, state, is_open FROM v_alerts WHERE alert_id = %s", (a,)
    ).fetchone()
    assert row == (f"测试园区 {unique_id}", "测试企业", "acknowledged", True)
    assert conn.execute("SELECT count(*) FROM v_alerts_open WHERE park_id = %s", (unique_id,)).fetchone() == (
        1,
    )
    conn.execute("SELECT pp_alert_act(%s, 'li.wei', 'resolve', NULL)", (a,))
    assert conn.execute("SELECT count(*) FROM v_alerts_open WHERE park_id = %s", (unique_id,)).fetchone() == (
        0,
    )


def test_outbox_rows_follow_subscription_filters(conn: psycopg.Connection, unique_id: str) -> None:
    conn.execute(
        "INSERT INTO webhook_subscriptions (name, url, secret, park_id, min_severity) VALUES "
        "('all', 'http://127.0.0.1:9/a', 'k0123456789abcdef', NULL, 'info'), "
        "('this-park-critical', 'http://127.0.0.1:9/b', 'k0123456789abcdef', %s, 'critical'), "
        "('other-park', 'http://127.0.0.1:9/c', 'k0123456789abcdef', 'elsewhere', 'info')",
        (unique_id,),
    )
    a = _fire(conn, unique_id, severity="warning")
    conn.execute("SELECT pp_alert_act(%s, 'li.wei', 'ack', NULL)", (a,))
    rows = conn.execute(
        "SELECT s.name, o.payload->'event'->>'action', o.idempotency_key, o.state FROM webhook_outbox o "
        "JOIN webhook_subscriptions s USING (subscription_id) ORDER BY o.delivery_id"
    ).fetchall()
    # warning is below 'critical' and the third subscription watches another park: only 'all' gets them
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("all", "fired", "pending"),
        ("all", "acknowledged", "pending"),
    ]
    assert len({r[2] for r in rows}) == 2
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO webhook_subscriptions (name, url, secret) VALUES ('short', 'http://x/', 'short')"
        )
