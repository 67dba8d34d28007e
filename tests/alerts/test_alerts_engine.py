"""The alert engine end to end: real Mosquitto, real PostgreSQL, the engine in a thread.

Readings go to the broker as wire batches (what gateways send); database-side conditions
(device silence, seq gaps, CEMS minute data) are written the way ingest writes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest

from alerts import HJ212_FLAGS, AlertSettings
from alerts.harness import EngineThread, sample_park
from parkpulse.registry import import_registry
from parkpulse.services import MosquittoBroker
from parkpulse.wire import alerts_topic, data_topic, status_topic


@dataclass
class Env:
    park: str
    firm: str
    gw: str
    db: str
    conn: psycopg.Connection
    pub: mqtt.Client
    engine: EngineThread
    seq: int = 0
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)

    def batch(self, readings: list[list[Any]], gaps: list[dict[str, Any]] | None = None) -> None:
        doc: dict[str, Any] = {
            "v": 1,
            "gateway": self.gw,
            "seq": self.seq,
            "sent_at": int(time.time() * 1000),
            "readings": readings,
        }
        if gaps:
            doc["gaps"] = gaps
        self.seq += 1
        self.pub.publish(
            data_topic(self.park, self.firm, self.gw), orjson.dumps(doc), qos=1
        ).wait_for_publish(5)

    def status(self, state: str) -> None:
        doc = {"v": 1, "gateway": self.gw, "state": state, "devices": ["meter-1", "cems-1"]}
        self.pub.publish(
            status_topic(self.park, self.firm, self.gw), orjson.dumps(doc), qos=1, retain=True
        ).wait_for_publish(5)

    def alerts(self, rule: str) -> list[tuple[Any, ...]]:
        return self.conn.execute(
            "SELECT alert_id, state, value, limit_value, subject, resolved_by, evidence FROM alerts "
            "WHERE rule_id = %s AND park_id = %s ORDER BY alert_id",
            (rule, self.park),
        ).fetchall()

    def wait(self, what: Callable[[], Any], timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = what()
            if got:
                return got
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting; last: {what()!r}")

    def events(self, alert_id: int) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT action FROM alert_events WHERE alert_id = %s ORDER BY event_id", (alert_id,)
            )
        ]


def _settings(db: str, broker: MosquittoBroker, park: str) -> AlertSettings:
    return AlertSettings(
        database_url=db,
        mqtt_url=broker.url,
        park=park,
        group=f"alerts-{park}",
        periodic_interval_s=0.3,
        emission_interval_s=0.5,
        publish_poll_s=0.3,
        webhook_poll_s=0.2,
        refresh_interval_s=0.0,
        drain_timeout_s=2,
    )


@pytest.fixture
def env(db: str, broker: MosquittoBroker, unique_id: str) -> Iterator[Env]:
    conn = psycopg.connect(db, autocommit=True)
    import_registry(conn, sample_park(unique_id))
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{unique_id}")
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    e = Env(
        unique_id,
        f"{unique_id}-f1",
        f"{unique_id}-g1",
        db,
        conn,
        pub,
        EngineThread(_settings(db, broker, unique_id)),
    )
    e.engine.start()
    try:
        yield e
    finally:
        e.engine.stop()
        # clear the retained status so later tests on the shared broker do not see it
        pub.publish(status_topic(e.park, e.firm, e.gw), b"", qos=1, retain=True).wait_for_publish(5)
        pub.disconnect()
        pub.loop_stop()
        conn.close()


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def test_threshold_fires_and_hysteresis_prevents_flapping(env: Env) -> None:
    # flue-temp-high (shipped rule): above 250 °C fires, resolves only at ≤ 240 °C held for 60 s
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    env.batch([["cems-1", "flue_temp_c", _ms(t0), 262.0, 0]])
    rows = env.wait(lambda: env.alerts("flue-temp-high"))
    alert_id = rows[0][0]
    assert rows[0][1:5] == ("firing", 262.0, 250.0, f"{env.gw}/cems-1/flue_temp_c")
    # oscillating around the limit, never at or below 240: the alert neither resolves nor re-fires
    seq = [245.0, 255.0, 244.0, 251.0, 241.0, 252.0]
    env.batch(
        [
            ["cems-1", "flue_temp_c", _ms(t0 + timedelta(seconds=10 * (i + 1))), v, 0]
            for i, v in enumerate(seq)
        ]
    )
    # at or below 240 for only 30 s of data time: not yet (and no wall-clock shortcut for a level rule)
    env.batch(
        [
            ["cems-1", "flue_temp_c", _ms(t0 + timedelta(seconds=100 + 30 * i)), v, 0]
            for i, v in enumerate([238.0, 236.0])
        ]
    )
    time.sleep(1.5)
    assert env.alerts("flue-temp-high")[0][1] == "firing"
    # at or below 240 for 60 s of data time: resolves automatically
    env.batch([["cems-1", "flue_temp_c", _ms(t0 + timedelta(seconds=160)), 235.0, 0]])
    rows = env.wait(lambda: [r for r in env.alerts("flue-temp-high") if r[1] == "resolved"])
    assert len(env.alerts("flue-temp-high")) == 1  # one alert for the whole episode
    assert rows[0][5] is None  # resolved automatically
    assert env.events(alert_id) == ["fired", "resolved"]
    # a reading of bad quality is not a temperature: ignored
    env.batch([["cems-1", "flue_temp_c", _ms(t0 + timedelta(seconds=300)), None, 4]])
    env.batch([["cems-1", "flue_temp_c", _ms(t0 + timedelta(seconds=310)), 270.0, 0]])
    env.wait(lambda: len(env.alerts("flue-temp-high")) == 2)


def test_threshold_applies_per_device_class(env: Env) -> None:
    # power-factor-low watches meters only: the same value on the CEMS device is ignored
    t0 = datetime.now(UTC)
    env.batch([["cems-1", "power_factor", _ms(t0), 0.5, 0], ["meter-1", "power_factor", _ms(t0), 0.7, 0]])
    rows = env.wait(lambda: env.alerts("power-factor-low"))
    time.sleep(0.5)
    rows = env.alerts("power-factor-low")
    assert [r[4] for r in rows] == [f"{env.gw}/meter-1/power_factor"]
    msg = env.conn.execute(
        "SELECT message_zh, message_en FROM alerts WHERE alert_id = %s", (rows[0][0],)
    ).fetchone()
    assert "功率因数" in msg[0] and "0.7" in msg[1] and "below 0.85" in msg[1]


def test_rate_of_change(env: Env) -> None:
    # voltage-step: |Δv| per 60 s above 40 V fires. 230 → 290 V in 60 s = 60 V/60 s
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    env.batch(
        [
            ["meter-1", "voltage_l1_v", _ms(t0), 230.0, 0],
            ["meter-1", "voltage_l1_v", _ms(t0 + timedelta(seconds=60)), 290.0, 0],
        ]
    )
    rows = env.wait(lambda: env.alerts("voltage-step"))
    assert rows[0][2] == pytest.approx(60.0) and rows[0][3] == 40.0
    # steady afterwards: the change over the last 60 s is 0 V (≤ clear level 20) from +120 s on;
    # after 120 s of that (+240 s) → resolved
    env.batch(
        [["meter-1", "voltage_l1_v", _ms(t0 + timedelta(seconds=60 + 30 * i)), 290.0, 0] for i in range(1, 7)]
    )
    env.wait(lambda: env.alerts("voltage-step")[0][1] == "resolved")


def test_rate_of_change_ignores_noise_between_close_samples(env: Env) -> None:
    # A 230 V supply read every 5 s with ±4 V of noise: one 5-s step of 8 V would read as
    # 8 / 5 × 60 = 96 V/min if scaled up, but over any 60-s window the change stays ≤ 8 V < 40.
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    noise = [226.0, 234.0] * 30
    env.batch(
        [["meter-1", "voltage_l1_v", _ms(t0 + timedelta(seconds=5 * i)), v, 0] for i, v in enumerate(noise)]
    )
    # a real step afterwards still fires: 230 → 290 V held for a minute
    step = [
        ["meter-1", "voltage_l1_v", _ms(t0 + timedelta(seconds=300 + 5 * i)), 290.0, 0] for i in range(13)
    ]
    env.batch(step)
    rows = env.wait(lambda: env.alerts("voltage-step"))
    assert len(rows) == 1
    assert rows[0][2] >= 40.0
    # raised by the step, not by the noise before it
    assert rows[0][6]["reading"]["ts_ms"] >= _ms(t0 + timedelta(seconds=300))


def test_meter_tamper_backwards_and_impossible_jump(env: Env) -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    ts = [_ms(t0 + timedelta(seconds=2 * i)) for i in range(6)]
    # 1000.00 → 1000.02 kWh in 2 s is fine for a 50 kW meter (max 50 × 2/3600 × 1.5 = 0.0417 kWh);
    # then 999.0: the counter went backwards with no event flagged by the gateway → tamper
    env.batch(
        [
            ["meter-1", "elec_import_kwh", ts[0], 1000.0, 0],
            ["meter-1", "elec_import_kwh", ts[1], 1000.02, 0],
            ["meter-1", "elec_import_kwh", ts[2], 999.0, 0],
        ]
    )
    rows = env.wait(lambda: env.alerts("meter-tamper"))
    ev = rows[0][6]
    assert ev["check"] == "backwards" and ev["delta"] == pytest.approx(-1.02)
    assert rows[0][2] == pytest.approx(-1.02)
    # export counter: a flagged reset (gateway event) is explained, not tamper …
    env.batch(
        [
            ["meter-1", "elec_export_kwh", ts[0], 500.0, 0],
            [
                "meter-1",
                "elec_export_kwh",
                ts[1],
                0.01,
                0,
                {"event": "reset", "prev": 500.0, "correction": 500.0},
            ],
        ]
    )
    # … but +5 kWh in 2 s is beyond what 50 kW can do (max 0.0417 kWh) → tamper
    env.batch([["meter-1", "elec_export_kwh", ts[2], 5.01, 0]])
    rows = env.wait(lambda: [r for r in env.alerts("meter-tamper") if r[4].endswith("elec_export_kwh")])
    ev = rows[0][6]
    assert ev["check"] == "jump" and ev["max_possible"] == pytest.approx(50 * 2 / 3600 * 1.5)
    assert ev["rated_power_kw"] == 50.0 and rows[0][2] == pytest.approx(5.0)
    assert len(env.alerts("meter-tamper")) == 2


def test_gateway_last_will_and_spool_gap(env: Env) -> None:
    env.status("offline")  # what the broker publishes as the gateway's last will
    rows = env.wait(lambda: env.alerts("gateway-offline"))
    assert rows[0][1] == "firing" and rows[0][4] == env.gw
    env.status("online")
    env.wait(lambda: env.alerts("gateway-offline")[0][1] == "resolved")
    # a batch reporting a spool gap (readings the gateway had to drop)
    gap = {
        "device": "meter-1",
        "start": _ms(datetime.now(UTC) - timedelta(hours=1)),
        "end": _ms(datetime.now(UTC)),
        "count": 1800,
        "reason": "spool full",
    }
    env.batch([], gaps=[gap])
    rows = env.wait(lambda: env.alerts("gateway-spool-gap"))
    assert rows[0][2] == 1800.0 and rows[0][6]["gaps"][0]["reason"] == "spool full"


def test_device_silence_and_seq_gap_from_the_database(env: Env) -> None:
    pk = env.conn.execute(
        "SELECT device_pk FROM devices WHERE gateway_id = %s AND device_id = 'meter-1'", (env.gw,)
    ).fetchone()[0]
    # meter polled every 2 s: silent beyond max(5 × 2 s, 30 s) = 30 s fires; last reading 10 minutes ago
    env.conn.execute(
        "INSERT INTO device_status (device_pk, last_ts, received_at, last_quality, readings) "
        "VALUES (%s, now() - interval '10 minutes', now() - interval '10 minutes', 0, 100)",
        (pk,),
    )
    rows = env.wait(lambda: env.alerts("device-silent"))
    assert rows[0][4] == f"{env.gw}/meter-1" and rows[0][2] >= 600 and rows[0][3] == 30.0
    env.conn.execute(
        "UPDATE device_status SET last_ts = now(), received_at = now() WHERE device_pk = %s", (pk,)
    )
    env.wait(lambda: env.alerts("device-silent")[0][1] == "resolved")
    # ingest found batches 7..9 missing
    env.conn.execute("INSERT INTO seq_gaps (gateway_id, from_seq, to_seq) VALUES (%s, 7, 9)", (env.gw,))
    rows = env.wait(lambda: env.alerts("gateway-seq-gap"))
    assert rows[0][2] == 3.0
    env.conn.execute("UPDATE seq_gaps SET filled_at = now() WHERE gateway_id = %s", (env.gw,))
    env.wait(lambda: env.alerts("gateway-seq-gap")[0][1] == "resolved")
    # the gateway's last will as ingest stored it (an engine that missed the status message still sees it)
    env.conn.execute(
        "INSERT INTO gateway_status (gateway_id, state, since) VALUES (%s, 'offline', now())", (env.gw,)
    )
    rows = env.wait(lambda: env.alerts("gateway-offline"))
    assert rows[0][6]["source"] == "gateway_status (stored by ingest)"
    env.conn.execute(
        "UPDATE gateway_status SET state = 'online', since = now() WHERE gateway_id = %s", (env.gw,)
    )
    env.wait(lambda: env.alerts("gateway-offline")[0][1] == "resolved")


def test_a_device_taken_out_of_service_is_expected_to_be_silent(env: Env) -> None:
    pk = env.conn.execute(
        "SELECT device_pk FROM devices WHERE gateway_id = %s AND device_id = 'meter-1'", (env.gw,)
    ).fetchone()[0]
    env.conn.execute(
        "INSERT INTO device_status (device_pk, last_ts, received_at, last_quality, readings) "
        "VALUES (%s, now() - interval '10 minutes', now() - interval '10 minutes', 0, 100)",
        (pk,),
    )
    env.wait(lambda: env.alerts("device-silent"))
    # the meter is disabled in the registry (taken out, or an import channel closed): its silence
    # is expected, so the open alert resolves although no reading came
    env.conn.execute("UPDATE devices SET enabled = false WHERE device_pk = %s", (pk,))
    rows = env.wait(lambda: env.alerts("device-silent")[0][1] == "resolved" and env.alerts("device-silent"))
    assert rows[0][5] is None  # resolved by the engine, not by a person


def _write_cems_hour(
    conn: psycopg.Connection,
    pk: int,
    hour: datetime,
    minutes: int,
    nox: float,
    o2: float,
    flags: dict[int, str],
) -> None:
    ids = {r[0]: r[1] for r in conn.execute("SELECT name, metric_id FROM metrics")}
    rows = []
    for i in range(minutes):
        t = hour + timedelta(minutes=i)
        rows.append((pk, ids["nox_mg_m3"], t, nox, 0))
        rows.append((pk, ids["so2_mg_m3"], t, 20.0, 0))
        rows.append((pk, ids["o2_pct"], t, o2, 0))
        rows.append((pk, ids["cems_flag"], t, float(HJ212_FLAGS[flags.get(i, "N")]), 0))
    conn.execute("SELECT pp_ensure_partition(%s)", (hour,))
    with conn.cursor().copy("COPY readings (device_pk, metric_id, ts, value, quality) FROM STDIN") as cp:
        for r in rows:
            cp.write_row(r)


def test_emission_hourly_exceedance_with_validity(env: Env) -> None:
    pk = env.conn.execute(
        "SELECT device_pk FROM devices WHERE gateway_id = %s AND device_id = 'cems-1'", (env.gw,)
    ).fetchone()[0]
    h1 = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    # hour 1: 50 minutes of NOx 150 mg/m³ at O2 9 %, 5 of them flagged M (maintenance).
    # valid minutes 45 (≥ 45: a valid hour); converted 150 × (21 − 3.5)/(21 − 9) = 218.75 > 200 → exceedance
    # (the raw 150 alone would look compliant). SO2 20 × 17.5/12 = 29.17 < 50: no SO2 alert.
    _write_cems_hour(env.conn, pk, h1, 50, 150.0, 9.0, {i: "M" for i in range(5)})
    rows = env.wait(lambda: env.alerts("emission-gb13271"))
    alert_id, state, value, limit, subject, _, ev = rows[0]
    assert (state, value, limit, subject) == ("firing", 218.75, 200.0, f"{env.gw}/cems-1/nox_mg_m3")
    assert ev["valid_minutes"] == 45 and ev["excluded"] == 5 and ev["excluded_by"] == {"flag:M": 5}
    assert ev["o2_ref"] == 3.5 and ev["avg_measured"] == 150.0 and ev["limit"] == 200.0
    assert len(ev["minutes"]) == 50 and ev["minutes"][0]["flag"] == "M" and ev["minutes"][0]["valid"] is False
    assert ev["minutes"][5]["converted"] == pytest.approx(218.75)
    assert "GB 13271-2014" in ev["limit_source"]
    # hour 2: 44 valid minutes (50 sent, 6 in calibration C) — not a valid hour: it neither
    # confirms nor clears the exceedance, whatever its values
    _write_cems_hour(env.conn, pk, h1 + timedelta(hours=1), 50, 100.0, 7.0, {i: "C" for i in range(6)})
    env.wait(
        lambda: (
            env.conn.execute(
                "SELECT valid_minutes, valid, exceeded FROM alert_emission_hours WHERE device_pk = %s AND metric = 'nox_mg_m3' "
                "AND hour = %s",
                (pk, h1 + timedelta(hours=1)),
            ).fetchone()
            == (44, False, None)
        )
    )
    assert env.alerts("emission-gb13271")[0][1] == "firing"
    # hour 3: 60 valid minutes of 150 at O2 7 % → 150 × 17.5/14 = 187.5 ≤ 200: compliant → resolves
    _write_cems_hour(env.conn, pk, h1 + timedelta(hours=2), 60, 150.0, 7.0, {})
    env.wait(lambda: env.alerts("emission-gb13271")[0][1] == "resolved")
    assert len(env.alerts("emission-gb13271")) == 1
    assert env.alerts("emission-gb13271")[0][2] == 218.75  # the alert keeps the exceeding value …
    detail = env.conn.execute(
        "SELECT detail FROM alert_events WHERE alert_id = %s AND action = 'resolved'", (alert_id,)
    ).fetchone()[0]
    assert (
        detail["value"] == 187.5 and detail["manual"] is False
    )  # … the audit row has the one that cleared it
    hours = env.conn.execute(
        "SELECT valid_minutes, excluded, valid, round(avg_converted::numeric, 2), exceeded FROM alert_emission_hours "
        "WHERE device_pk = %s AND metric = 'nox_mg_m3' ORDER BY hour",
        (pk,),
    ).fetchall()
    assert [tuple(map(lambda x: float(x) if hasattr(x, "as_tuple") else x, h)) for h in hours] == [
        (45, 5, True, 218.75, True),
        (44, 6, False, 125.0, None),
        (60, 0, True, 187.5, False),
    ]
    assert env.events(alert_id) == ["fired", "resolved"]


def test_mqtt_current_is_retained_and_events_are_published(env: Env, broker: MosquittoBroker) -> None:
    got: list[tuple[str, bytes, bool]] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{env.park}")
    sub.on_message = lambda c, u, m: got.append((m.topic, m.payload, bool(m.retain)))
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe(alerts_topic(env.park, "events"), qos=1)
    sub.loop_start()
    try:
        time.sleep(0.3)
        env.status("offline")
        rows = env.wait(lambda: env.alerts("gateway-offline"))
        alert_id = rows[0][0]
        env.conn.execute("SELECT pp_alert_act(%s, 'li.wei', 'acknowledge', '已通知企业')", (alert_id,))
        env.wait(lambda: len([g for g in got if g[0].endswith("/events")]) >= 2)
        evs = [orjson.loads(g[1]) for g in got if g[0].endswith("/events")]
        assert [e["event"]["action"] for e in evs[:2]] == ["fired", "acknowledged"]
        assert evs[1]["event"]["actor"] == "li.wei" and evs[1]["alert"]["state"] == "acknowledged"
    finally:
        sub.disconnect()
        sub.loop_stop()

    # a late subscriber gets the retained list of open alerts of the park at once; the engine
    # publishes the event before it re-publishes the list, so wait until the retained list a fresh
    # subscriber gets shows the acknowledgement
    def retained_current() -> dict[str, Any] | None:
        box: list[tuple[bytes, bool]] = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{env.park}-{time.monotonic_ns()}")
        c.on_message = lambda cl, u, m: box.append((m.payload, bool(m.retain)))
        c.connect("127.0.0.1", broker.port)
        c.subscribe(alerts_topic(env.park, "current"), qos=1)
        c.loop_start()
        try:
            deadline = time.monotonic() + 2
            while not box and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            c.disconnect()
            c.loop_stop()
        if not box or not box[0][1]:
            return None
        doc: dict[str, Any] = orjson.loads(box[0][0])
        return doc if doc.get("alerts") and doc["alerts"][0]["state"] == "acknowledged" else None

    env.wait(retained_current)
    late: list[tuple[str, bytes, bool]] = []
    sub2 = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"late-{env.park}")
    sub2.on_message = lambda c, u, m: late.append((m.topic, m.payload, bool(m.retain)))
    sub2.connect("127.0.0.1", broker.port)
    sub2.subscribe(alerts_topic(env.park, "current"), qos=1)
    sub2.loop_start()
    try:
        env.wait(lambda: late)
        topic, payload, retained = late[-1]
        doc = orjson.loads(payload)
        assert retained and topic == f"pp/v1/{env.park}/alerts/current"
        assert doc["park"] == env.park and doc["count"] == 1
        assert doc["alerts"][0]["alert_id"] == alert_id and doc["alerts"][0]["state"] == "acknowledged"
        # resolving empties the current list (updated and still retained)
        env.status("online")
        env.wait(lambda: orjson.loads(late[-1][1])["count"] == 0)
    finally:
        sub2.disconnect()
        sub2.loop_stop()
        env.pub.publish(alerts_topic(env.park, "current"), b"", qos=1, retain=True).wait_for_publish(5)


def test_manual_resolve_while_condition_holds_does_not_refire(env: Env) -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=2)
    env.batch([["cems-1", "flue_temp_c", _ms(t0), 270.0, 0]])
    alert_id = env.wait(lambda: env.alerts("flue-temp-high"))[0][0]
    env.conn.execute("SELECT pp_alert_act(%s, 'li.wei', 'resolve', '人工确认')", (alert_id,))
    time.sleep(1.0)  # the engine learns of it from the audit trail
    env.batch([["cems-1", "flue_temp_c", _ms(t0 + timedelta(seconds=5)), 271.0, 0]])
    time.sleep(1.0)
    assert len(env.alerts("flue-temp-high")) == 1
    # once the condition has cleared, a new breach is a new alert
    env.batch(
        [
            ["cems-1", "flue_temp_c", _ms(t0 + timedelta(seconds=10)), 200.0, 0],
            ["cems-1", "flue_temp_c", _ms(t0 + timedelta(seconds=20)), 280.0, 0],
        ]
    )
    env.wait(lambda: len(env.alerts("flue-temp-high")) == 2)


def test_engine_survives_a_broker_restart(db: str, own_broker: MosquittoBroker, unique_id: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        import_registry(conn, sample_park(unique_id))
        with EngineThread(_settings(db, own_broker, unique_id)):
            own_broker.restart(down_for=0.5)
            pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{unique_id}")
            pub.connect("127.0.0.1", own_broker.port)
            pub.loop_start()
            try:
                gw = f"{unique_id}-g1"
                doc = {
                    "v": 1,
                    "gateway": gw,
                    "seq": 0,
                    "sent_at": int(time.time() * 1000),
                    "readings": [["cems-1", "flue_temp_c", int(time.time() * 1000), 300.0, 0]],
                }
                deadline = time.monotonic() + 20
                row = None
                # the engine resubscribes on its own; keep publishing until it has (QoS 1, no session kept)
                while time.monotonic() < deadline and row is None:
                    pub.publish(
                        data_topic(unique_id, f"{unique_id}-f1", gw), orjson.dumps(doc), qos=1
                    ).wait_for_publish(5)
                    time.sleep(0.3)
                    row = conn.execute("SELECT state FROM alerts WHERE rule_id = 'flue-temp-high'").fetchone()
                assert row == ("firing",)
            finally:
                pub.disconnect()
                pub.loop_stop()


def test_hysteresis_clear_timer_survives_an_engine_restart(
    db: str, broker: MosquittoBroker, unique_id: str
) -> None:
    # flue-temp-high resolves after ≤ 240 °C held for 60 s of data time. The clear starts before a
    # restart (t+10 s) and completes after it (t+75 s: 65 s clear); without the stored timer the
    # restarted engine would start counting again at t+75 s and keep the alert open.
    t0 = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0)
    with psycopg.connect(db, autocommit=True) as conn:
        import_registry(conn, sample_park(unique_id))
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{unique_id}")
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        e = Env(
            unique_id,
            f"{unique_id}-f1",
            f"{unique_id}-g1",
            db,
            conn,
            pub,
            EngineThread(_settings(db, broker, unique_id)),
        )
        try:
            with e.engine:
                e.batch([["cems-1", "flue_temp_c", _ms(t0), 265.0, 0]])
                alert_id = e.wait(lambda: e.alerts("flue-temp-high"))[0][0]
                before = conn.execute(
                    "SELECT updated_at FROM alerts WHERE alert_id = %s", (alert_id,)
                ).fetchone()[0]
                e.batch([["cems-1", "flue_temp_c", _ms(t0 + timedelta(seconds=10)), 235.0, 0]])
                e.wait(
                    lambda: conn.execute(
                        "SELECT clear_since FROM alerts WHERE alert_id = %s", (alert_id,)
                    ).fetchone()[0]
                )
            row = conn.execute(
                "SELECT state, clear_since, updated_at FROM alerts WHERE alert_id = %s", (alert_id,)
            ).fetchone()
            assert row[0] == "firing" and row[1] == t0 + timedelta(seconds=10)
            assert row[2] == before  # bookkeeping is not a change of the alert
            e.engine = EngineThread(_settings(db, broker, unique_id))
            with e.engine:
                e.batch([["cems-1", "flue_temp_c", _ms(t0 + timedelta(seconds=75)), 236.0, 0]])
                e.wait(lambda: e.alerts("flue-temp-high")[0][1] == "resolved")
            assert e.events(alert_id) == ["fired", "resolved"]
        finally:
            pub.disconnect()
            pub.loop_stop()


def test_healthz_and_metrics(db: str, broker: MosquittoBroker, unique_id: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        import_registry(conn, sample_park(unique_id))
    settings = _settings(db, broker, unique_id).model_copy(update={"http_port": 0})
    with EngineThread(settings) as et:
        assert et.engine is not None and et.engine.http_port
        base = f"http://127.0.0.1:{et.engine.http_port}"
        h = httpx.get(f"{base}/healthz", timeout=5)
        assert h.status_code == 200 and h.json()["status"] == "ok" and h.json()["mqtt_subscribed"] is True
        m = httpx.get(f"{base}/metrics", timeout=5)
        assert m.status_code == 200 and "parkpulse_alerts_fired_total 0" in m.text
        assert httpx.get(f"{base}/nope", timeout=5).status_code == 404


def test_fixed_client_id_keeps_a_session_across_engine_downtime(
    db: str, broker: MosquittoBroker, unique_id: str
) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        import_registry(conn, sample_park(unique_id))
        settings = _settings(db, broker, unique_id).model_copy(update={"client_id": f"alerts-{unique_id}"})
        with EngineThread(settings):
            pass  # the session and its subscription now exist on the broker
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{unique_id}")
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        e = Env(unique_id, f"{unique_id}-f1", f"{unique_id}-g1", db, conn, pub, EngineThread(settings))
        try:
            # published while no engine runs: the broker queues it for the session
            e.batch([["cems-1", "flue_temp_c", _ms(datetime.now(UTC)), 280.0, 0]])
            assert e.alerts("flue-temp-high") == []
            with e.engine:
                rows = e.wait(lambda: e.alerts("flue-temp-high"))
            assert rows[0][2] == 280.0
        finally:
            pub.disconnect()
            pub.loop_stop()
