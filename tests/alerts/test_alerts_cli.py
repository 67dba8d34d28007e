"""`parkpulse alerts …` commands against the real database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psycopg
import yaml
from typer.testing import CliRunner

from alerts.cli import app
from alerts.harness import sample_park
from parkpulse.registry import import_registry
from parkpulse.services import MosquittoBroker
from parkpulse.wire import status_topic

runner = CliRunner()


def test_rules_lists_versions_parameters_and_limit_sources() -> None:
    r = runner.invoke(app, ["rules"])
    assert r.exit_code == 0 and "alert rules" in r.output, r.output
    r = runner.invoke(app, ["rules", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    rules = {x["id"]: x for x in doc["rules"]}
    assert {"emission-gb13271", "device-silent", "meter-tamper", "voltage-step", "flue-temp-high"} <= set(
        rules
    )
    assert (
        rules["emission-gb13271"]["version"] == 2
        and rules["emission-gb13271"]["params"]["min_valid_minutes"] == 45
    )
    sets = doc["limits"]["limit_sets"]
    assert sets["gb13271-2014-table1"]["limits"]["gas_boiler"]["nox_mg_m3"] == 400
    assert sets["gb13271-2014-table2"]["limits"]["gas_boiler"]["nox_mg_m3"] == 200
    assert sets["gb13271-2014-table3"]["limits"]["gas_boiler"]["nox_mg_m3"] == 150
    assert (
        sets["gb13271-2014-table3"]["table"] == "Table 3" and sets["gb13271-2014-table3"]["verified"] is False
    )
    assert "郑州" in doc["limits"]["special_limit_areas"]["mee-2018-2plus26"]["cities"]
    assert "GB 13271-2014" in doc["limits"]["reference_o2"]["coal_boiler"]["source"]
    assert doc["limits"]["overrides"]["zhengzhou-ultra-low-nox"]["limits"]["nox_mg_m3"] == 30


def test_check_reports_every_problem_with_exit_code(tmp_path: Path) -> None:
    p = tmp_path / "rules.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "rules": [
                    {
                        "id": "x",
                        "kind": "threshold",
                        "version": 1,
                        "params": {"metric": "nope", "op": "above", "limit": 1},
                    },
                    {
                        "id": "y",
                        "kind": "rate_of_change",
                        "version": 1,
                        "params": {"metric": "voltage_l1_v", "limit": -1},
                    },
                ],
            }
        ),
        encoding="utf-8",
    )
    r = runner.invoke(app, ["check", "--rules", str(p)], terminal_width=400)
    assert r.exit_code == 1
    assert "rules[0].params.metric" in r.output and "'nope'" in r.output
    assert "rules[1].params.limit" in r.output
    ok = runner.invoke(app, ["check"])
    assert ok.exit_code == 0 and "ok:" in ok.output


def test_webhooks_and_alert_actions(db: str, unique_id: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        import_registry(conn, sample_park(unique_id))
        aid = conn.execute(
            "SELECT pp_alert_fire('gateway-offline', 1, 'data_gap', 'warning', %s, NULL, 'g', NULL, NULL, 'g', 1, NULL, "
            "NULL, '网关离线', 'gateway offline', '{}')",
            (unique_id,),
        ).fetchone()[0]
    db_opt = ["--database-url", db]
    r = runner.invoke(
        app, ["webhooks", "add", "hub", "http://127.0.0.1:8099/hook", "--park", unique_id, *db_opt]
    )
    assert r.exit_code == 0 and "secret (shown once)" in r.output, r.output
    r = runner.invoke(app, ["webhooks", "add", "hub", "http://127.0.0.1:8099/hook", *db_opt])
    assert r.exit_code == 1 and "exists already" in r.output
    r = runner.invoke(app, ["webhooks", "add", "bad", "ftp://x", *db_opt])
    assert r.exit_code == 1 and "url" in r.output
    r = runner.invoke(app, ["webhooks", "add", "weak", "http://x/", "--secret", "short", *db_opt])
    assert r.exit_code == 1 and "secret" in r.output
    r = runner.invoke(app, ["ack", str(aid), "--actor", "li.wei", "--comment", "收到", *db_opt])
    assert r.exit_code == 0 and "acknowledged" in r.output
    r = runner.invoke(app, ["ack", str(aid), "--actor", "li.wei", *db_opt])
    assert r.exit_code == 1 and "cannot acknowledge" in r.output
    r = runner.invoke(app, ["comment", str(aid), "已派人", "--actor", "wang.fang", *db_opt])
    assert r.exit_code == 0
    r = runner.invoke(app, ["webhooks", "list", *db_opt], terminal_width=300)
    assert r.exit_code == 0 and "hub" in r.output
    with psycopg.connect(db) as conn:
        # the subscription was added before the ack and the comment: both are queued for it
        assert conn.execute("SELECT count(*) FROM webhook_outbox").fetchone() == (2,)
    r = runner.invoke(app, ["audit", str(aid), *db_opt])
    assert r.exit_code == 0 and "li.wei" in r.output and "wang.fang" in r.output and "fired" in r.output
    r = runner.invoke(app, ["list", "--park", unique_id, "--json", *db_opt])
    docs = [json.loads(line) for line in r.output.splitlines()]
    assert r.exit_code == 0 and [(d["alert_id"], d["state"], d["acked_by"]) for d in docs] == [
        (aid, "acknowledged", "li.wei")
    ]
    assert runner.invoke(app, ["list", *db_opt]).exit_code == 0
    r = runner.invoke(app, ["webhooks", "remove", "hub", *db_opt])
    assert r.exit_code == 0
    r = runner.invoke(app, ["webhooks", "remove", "hub", *db_opt])
    assert r.exit_code == 1


def test_run_as_a_process_fires_and_stops_cleanly_on_sigterm(
    db: str, broker: MosquittoBroker, unique_id: str
) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        import_registry(conn, sample_park(unique_id))
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PARKPULSE_DATABASE_URL": db,
        "PARKPULSE_MQTT_URL": broker.url,
        "PYTHONPATH": str(root),
        "PARKPULSE_ALERTS_GROUP": f"alerts-{unique_id}",
    }
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "parkpulse"), "alerts", "run", "--park", unique_id],
        env=env,
        cwd=str(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{unique_id}")
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    topic = status_topic(unique_id, f"{unique_id}-f1", f"{unique_id}-g1")
    try:
        deadline = time.monotonic() + 30
        row = None
        with psycopg.connect(db, autocommit=True) as conn:
            while time.monotonic() < deadline and row is None and proc.poll() is None:
                pub.publish(
                    topic,
                    orjson.dumps({"v": 1, "gateway": f"{unique_id}-g1", "state": "offline"}),
                    qos=1,
                    retain=True,
                ).wait_for_publish(5)
                time.sleep(0.3)
                row = conn.execute("SELECT rule_id, state FROM alerts").fetchone()
        assert row == ("gateway-offline", "firing")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        out = proc.stdout.read().decode() if proc.stdout else ""
        assert "stopped" in out and "fired=1" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        pub.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        pub.disconnect()
        pub.loop_stop()


def test_run_on_an_unmigrated_database_says_what_to_do(pg_admin: str) -> None:
    # the maintenance database has no ParkPulse tables
    r = runner.invoke(app, ["run", "--database-url", pg_admin, "--mqtt-url", "mqtt://127.0.0.1:1"])
    assert r.exit_code == 1
    assert "parkpulse db migrate" in r.output
