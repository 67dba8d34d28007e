"""Webhooks: HMAC signatures, retries with backoff, never lost while the receiver (or the engine)
is down, delivered once per event. The receiver is a real local HTTP server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from rich.console import Console
from typer.testing import CliRunner

from alerts import AlertSettings, sign, verify_signature
from alerts import cli as alerts_cli
from alerts._webhooks import WebhookWorker, backoff_s
from alerts.cli import app
from alerts.harness import EngineThread, WebhookReceiver, sample_park
from parkpulse.registry import import_registry
from parkpulse.services import MosquittoBroker, free_port
from parkpulse.wire import status_topic

SECRET = "s3cret-for-tests-0123456789"


def _settings(db: str, broker: MosquittoBroker, park: str) -> AlertSettings:
    return AlertSettings(
        database_url=db,
        mqtt_url=broker.url,
        park=park,
        group=f"alerts-{park}",
        periodic_interval_s=0.5,
        publish_poll_s=0.3,
        webhook_poll_s=0.1,
        webhook_backoff_base_s=0.2,
        webhook_backoff_max_s=0.8,
        webhook_timeout_s=2.0,
        drain_timeout_s=2,
    )


@pytest.fixture
def conn(db: str, unique_id: str) -> Iterator[psycopg.Connection]:
    c = psycopg.connect(db, autocommit=True)
    import_registry(c, sample_park(unique_id))
    yield c
    c.close()


def _subscribe(conn: psycopg.Connection, url: str) -> None:
    conn.execute(
        "INSERT INTO webhook_subscriptions (name, url, secret) VALUES ('inspector-hub', %s, %s)",
        (url, SECRET),
    )


def _events(conn: psycopg.Connection, park: str) -> list[int]:
    cur = conn.execute(
        "SELECT e.event_id FROM alert_events e JOIN alerts a USING (alert_id) WHERE a.park_id = %s ORDER BY 1",
        (park,),
    )
    return [r[0] for r in cur]


def _make_events(conn: psycopg.Connection, park: str) -> int:
    aid = conn.execute(
        "SELECT pp_alert_fire('flue-temp-high', 1, 'threshold', 'warning', %s, NULL, 'g', 'd', 'flue_temp_c', "
        "'g/d/flue_temp_c', 262, 250, 'degC', '超温', 'too hot', '{}')",
        (park,),
    ).fetchone()[0]
    conn.execute("SELECT pp_alert_act(%s, 'li.wei', 'acknowledge', '已电话通知')", (aid,))
    conn.execute("SELECT pp_alert_act(%s, 'li.wei', 'comment', '企业称传感器故障')", (aid,))
    return int(aid)


def test_signature_and_backoff() -> None:
    body = b'{"v":1}'
    ts = int(time.time())
    sig = sign(SECRET, ts, body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify_signature(SECRET, str(ts), body, sig)
    assert not verify_signature(SECRET, str(ts), b'{"v":2}', sig)  # body changed
    assert not verify_signature("another-secret-0123456", str(ts), body, sig)
    assert not verify_signature(
        SECRET, str(ts - 3600), body, sign(SECRET, ts - 3600, body)
    )  # replayed an hour later
    assert not verify_signature(SECRET, None, body, sig)
    # 2, 4, 8, … s, capped at 300 s, plus up to 20 % jitter
    assert 2.0 <= backoff_s(1, 2.0, 300.0) <= 2.4
    assert 8.0 <= backoff_s(3, 2.0, 300.0) <= 9.6
    assert 300.0 <= backoff_s(20, 2.0, 300.0) <= 360.0


def test_receiver_down_then_up_delivers_each_event_once(
    db: str, conn: psycopg.Connection, broker: MosquittoBroker, unique_id: str
) -> None:
    port = free_port()
    _subscribe(conn, f"http://127.0.0.1:{port}/hook")
    with EngineThread(_settings(db, broker, unique_id)):
        aid = _make_events(conn, unique_id)  # fired, acknowledged, comment: 3 events
        events = _events(conn, unique_id)
        assert len(events) == 3
        # nobody listens on the port: attempts fail and are rescheduled, nothing is lost
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT max(attempts), bool_and(state = 'pending') FROM webhook_outbox"
            ).fetchone()
            if row[0] and row[0] >= 2:
                break
            time.sleep(0.1)
        attempts, pending = conn.execute(
            "SELECT max(attempts), bool_and(state = 'pending') FROM webhook_outbox"
        ).fetchone()
        assert attempts >= 2 and pending
        err = conn.execute("SELECT last_error FROM webhook_outbox WHERE attempts > 0 LIMIT 1").fetchone()[0]
        assert "Connect" in err
        # the receiver comes up on that port, first answering 503 (retried), then 200
        with WebhookReceiver(SECRET, port=port, status=503) as recv:
            deadline = time.monotonic() + 10
            while (
                time.monotonic() < deadline
                and not conn.execute("SELECT 1 FROM webhook_outbox WHERE last_status = 503").fetchone()
            ):
                time.sleep(0.05)
            assert recv.received == []
            recv.status = 200
            assert recv.wait_for(3, timeout=15)
            time.sleep(1.5)  # time for any duplicate to show up
            assert len(recv.received) == 3
            assert all(r.signature_ok for r in recv.received)
            assert sorted(recv.keys.values()) == [1, 1, 1]  # each idempotency key exactly once
            bodies = [r.body for r in recv.received]
            assert [b["event"]["event_id"] for b in bodies] == events  # in order
            assert [b["event"]["action"] for b in bodies] == ["fired", "acknowledged", "comment"]
            assert (
                bodies[1]["event"]["actor"] == "li.wei"
                and bodies[2]["event"]["comment"] == "企业称传感器故障"
            )
            assert all(b["alert"]["alert_id"] == aid for b in bodies)
            assert recv.received[0].headers["X-ParkPulse-Event"] == "fired"
        rows = conn.execute(
            "SELECT state, attempts, last_status FROM webhook_outbox ORDER BY delivery_id"
        ).fetchall()
        assert all(r[0] == "delivered" and r[2] == 200 for r in rows)
        assert rows[0][1] >= 3  # refused, 503, then delivered


def test_events_made_while_engine_is_down_are_delivered_later(
    db: str, conn: psycopg.Connection, broker: MosquittoBroker, unique_id: str
) -> None:
    with WebhookReceiver(SECRET) as recv:
        _subscribe(conn, recv.url)
        _make_events(conn, unique_id)  # no engine running: the outbox holds them
        assert conn.execute("SELECT count(*) FROM webhook_outbox WHERE state = 'pending'").fetchone() == (3,)
        with EngineThread(_settings(db, broker, unique_id)):
            assert recv.wait_for(3)
            # and an alert raised from the wire goes the same way: the gateway's last will
            pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            pub.connect("127.0.0.1", broker.port)
            pub.loop_start()
            topic = status_topic(unique_id, f"{unique_id}-f1", f"{unique_id}-g1")
            try:
                pub.publish(
                    topic,
                    orjson.dumps({"v": 1, "gateway": f"{unique_id}-g1", "state": "offline"}),
                    qos=1,
                    retain=True,
                ).wait_for_publish(5)
                assert recv.wait_for(4)
            finally:
                pub.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
                pub.disconnect()
                pub.loop_stop()
        last = recv.received[3].body
        assert last["event"]["action"] == "fired" and last["alert"]["rule_id"] == "gateway-offline"
        assert len(recv.received) == 4 and len(recv.keys) == 4


def test_expired_delivery_is_dead_and_retry_requeues_it(
    db: str, conn: psycopg.Connection, unique_id: str
) -> None:
    port = free_port()
    _subscribe(conn, f"http://127.0.0.1:{port}/hook")
    conn.execute(
        "SELECT pp_alert_fire('gateway-offline', 1, 'data_gap', 'warning', %s, NULL, 'g', NULL, NULL, 'g', 1, NULL, "
        "NULL, '网关离线', 'gateway offline', '{}')",
        (unique_id,),
    )

    async def once(max_age_s: float) -> int:
        async with (
            await psycopg.AsyncConnection.connect(db, autocommit=True) as c,
            httpx.AsyncClient() as client,
        ):
            w = WebhookWorker(timeout_s=2, base_s=0.05, cap_s=0.05, max_age_s=max_age_s, batch=10)
            return await w.run_once(c, client)

    time.sleep(0.05)
    assert asyncio.run(once(max_age_s=0.01)) == 1  # refused, and older than the max age → dead
    assert conn.execute("SELECT state, attempts FROM webhook_outbox").fetchone() == ("dead", 1)
    assert asyncio.run(once(max_age_s=60)) == 0  # a dead delivery is not tried again by itself
    r = CliRunner().invoke(app, ["webhooks", "retry", "inspector-hub", "--database-url", db])
    assert r.exit_code == 0 and "1 deliveries" in r.output
    with WebhookReceiver(SECRET, port=port) as recv:
        assert asyncio.run(once(max_age_s=60)) == 1
        assert len(recv.received) == 1 and recv.received[0].signature_ok
    assert conn.execute("SELECT state, attempts FROM webhook_outbox").fetchone() == ("delivered", 2)


HOOK_PASSWORD = "hookPw-Tq48x2"
HOOK_TOKEN = "hookTok-Rb93m7"


def _flat(text: str) -> str:
    """Output without blanks, so a URL rich folded over two lines reads whole again."""
    return "".join(c for c in text if not c.isspace())


def test_webhook_url_secrets_are_never_printed_or_logged(
    db: str,
    conn: psycopg.Connection,
    unique_id: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`webhooks add` and `list` show the URL redacted; failed deliveries log it (and store their
    error) redacted; the subscription itself keeps the whole URL, which the delivery needs."""
    port = free_port()
    url = f"http://hub:{HOOK_PASSWORD}@127.0.0.1:{port}/hook?park={unique_id}&access_token={HOOK_TOKEN}"
    outputs = []
    r = CliRunner().invoke(app, ["webhooks", "add", "hub", url, "--secret", SECRET, "--database-url", db])
    assert r.exit_code == 0, r.output
    assert f"hub:***@127.0.0.1:{port}/hook?park={unique_id}&access_token=***" in _flat(r.output)
    outputs.append(r.output)
    assert conn.execute("SELECT url FROM webhook_subscriptions WHERE name = 'hub'").fetchone() == (url,)
    r = CliRunner().invoke(
        app, ["webhooks", "add", "hub2", url.replace("http", "ftp", 1), "--database-url", db]
    )
    assert r.exit_code == 1 and "url:" in r.output and "hub:***@" in _flat(r.output), r.output
    outputs.append(r.output)

    conn.execute(
        "SELECT pp_alert_fire('gateway-offline', 1, 'data_gap', 'warning', %s, NULL, 'g', NULL, NULL, 'g', 1, NULL, "
        "NULL, '网关离线', 'gateway offline', '{}')",
        (unique_id,),
    )

    async def once() -> int:
        async with (
            await psycopg.AsyncConnection.connect(db, autocommit=True) as c,
            httpx.AsyncClient() as client,
        ):
            w = WebhookWorker(timeout_s=2, base_s=0.01, cap_s=0.01, max_age_s=60, batch=10)
            return await w.run_once(c, client)

    with caplog.at_level("INFO", logger="parkpulse.alerts.webhooks"):
        assert asyncio.run(once()) == 1  # refused: nobody listens
        with WebhookReceiver(SECRET, port=port, status=500) as recv:
            time.sleep(0.05)
            assert asyncio.run(once()) == 1  # answered 500
            assert recv.received == []
    assert conn.execute("SELECT attempts, last_status FROM webhook_outbox").fetchone() == (2, 500)
    assert (
        f"webhook http://hub:***@127.0.0.1:{port}/hook?park={unique_id}&access_token=***: delivery"
        in caplog.text
    )
    assert "ConnectError" in caplog.text and "HTTP 500" in caplog.text
    monkeypatch.setattr(alerts_cli, "out", Console(width=400))  # one line per subscription
    r = CliRunner().invoke(app, ["webhooks", "list", "--database-url", db])
    assert (
        r.exit_code == 0 and f"hub:***@127.0.0.1:{port}/hook?park={unique_id}&access_token=***" in r.output
    ), r.output
    outputs.append(r.output)
    stored_errors = [str(e) for (e,) in conn.execute("SELECT last_error FROM webhook_outbox")]
    for text in [*outputs, caplog.text, *stored_errors]:
        assert HOOK_PASSWORD not in text and HOOK_TOKEN not in text, text
