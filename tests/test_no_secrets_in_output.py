"""No secret in logs or output (issue 9): every service and CLI is run as a process with passwords and
tokens in its URLs — a mistyped one at start-up, and good ones while a park runs through a broker
restart and failing webhook deliveries — and each secret is searched for in everything it printed
and every log file it wrote. The URLs must still be recognisable, redacted (`user:***@`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import conninfo

from parkpulse.registry import ParkFile, import_registry
from parkpulse.services import MosquittoBroker, free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# every secret the tests below hand to a service; none may come out again
MQTT_PW = "mqttPw-Zr81k2"
DB_PW = "dbPw-Qx52h9"
HOOK_PW = "hookPw-Jw37c4"
HOOK_TOKEN = "hookTok-Vn64t1"
GW_PW = "gwPw-Lp19s8"
SECRETS = (MQTT_PW, DB_PW, HOOK_PW, HOOK_TOKEN, GW_PW)


def _env(**extra: str) -> dict[str, str]:
    """The environment without the caller's ParkPulse settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARKPULSE_")}
    return {**env, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **extra}


def _assert_no_secret(where: str, text: str) -> None:
    for s in SECRETS:
        assert s not in text, f"{where} shows the secret {s!r}:\n{text[-3000:]}"


BAD_MQTT = f"mqttx://ingest:{MQTT_PW}@broker.example"
BAD_PORT = f"mqtt://ingest:{MQTT_PW}@broker.example:99999"


@pytest.mark.parametrize(
    ("argv", "env", "names"),
    [
        (["parkpulse", "ingest", "run"], {"PARKPULSE_MQTT_URL": BAD_MQTT}, "PARKPULSE_MQTT_URL"),
        (["parkpulse", "ingest", "run"], {"PARKPULSE_INGEST_MQTT_URL": BAD_MQTT}, "mqtt url"),
        (["parkpulse", "ingest", "run", "--mqtt-url", BAD_PORT], {}, "mqtt url"),
        (["parkpulse", "alerts", "run"], {"PARKPULSE_MQTT_URL": BAD_MQTT}, "PARKPULSE_MQTT_URL"),
        (["parkpulse", "alerts", "run", "--mqtt-url", BAD_MQTT], {}, "mqtt-url"),
        (["parkpulse", "console", "serve"], {"PARKPULSE_MQTT_URL": BAD_MQTT}, "PARKPULSE_MQTT_URL"),
        (["parkpulse", "db", "status"], {"PARKPULSE_MQTT_URL": BAD_MQTT}, "PARKPULSE_MQTT_URL"),
        (["parkpulse", "alerts", "webhooks", "list"], {"PARKPULSE_MQTT_URL": BAD_MQTT}, "PARKPULSE_MQTT_URL"),
        (
            ["parkpulse", "db", "status", "--database-url", f"postgresql://pp:{DB_PW}@127.0.0.1:1/pp"],
            {},
            "database",
        ),
    ],
    ids=[
        "ingest-env",
        "ingest-own-env",
        "ingest-option-port",
        "alerts-env",
        "alerts-option",
        "console-env",
        "db-env",
        "webhooks-env",
        "db-unreachable",
    ],
)
def test_a_bad_url_at_start_is_named_redacted(
    argv: list[str], env: dict[str, str], names: str, tmp_path: Path
) -> None:
    r = subprocess.run(
        [str(BIN / argv[0]), *argv[1:]],
        env=_env(**env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = r.stdout + r.stderr
    assert r.returncode not in (0, None), out
    assert "Traceback" not in out, out
    assert names in out and ":***@" in out, out
    _assert_no_secret(" ".join(argv[:3]), out)


def test_gateway_validate_and_check_show_urls_redacted(tmp_path: Path) -> None:
    doc = {
        "gateway": {"park": "p1", "firm": "f1", "id": "gw1"},
        "uplink": {"url": f"mqttx://gw1:{GW_PW}@127.0.0.1:1883", "password": GW_PW},
        "spool": {"path": str(tmp_path / "spool.db")},
        "mqtt": [
            {
                "name": "sensors",
                "url": f"mqtt://line:{MQTT_PW}@127.0.0.1:99999",
                "topics": [
                    {"topic": "factory/l1/telemetry", "device": "l1", "fields": {"t": "temperature_c"}}
                ],
            }
        ],
    }
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc), encoding="utf-8")
    r = subprocess.run(
        [str(BIN / "parkpulse-gateway"), "validate", "-c", str(bad)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = r.stdout + r.stderr
    assert (
        r.returncode == 2
        and "uplink.url" in out
        and "gw1:***@127.0.0.1" in out
        and "line:***@127.0.0.1" in out
    ), out
    _assert_no_secret("gateway validate", out)

    # a sensor broker that does not answer: `check` names it, redacted
    port = free_port()
    doc["uplink"] = {"url": f"mqtt://gw1:{GW_PW}@127.0.0.1:{port}"}
    doc["mqtt"][0]["url"] = f"mqtt://line:{MQTT_PW}@127.0.0.1:{port}"  # type: ignore[index]
    good = tmp_path / "gw.yaml"
    good.write_text(yaml.safe_dump(doc), encoding="utf-8")
    r = subprocess.run(
        [str(BIN / "parkpulse-gateway"), "check", "-c", str(good), "--timeout", "2"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 1 and f"line:***@127.0.0.1:{port}" in out, out
    _assert_no_secret("gateway check", out)


# -- a running park ---------------------------------------------------------------------------------


def _start(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        return subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=log.parent)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(what: str, check: object, timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.3)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in logs if p.exists())
    pytest.fail(f"{what} within {timeout:.0f} s\n{tails}")


@pytest.fixture
def modbus_meter() -> Iterator[int]:
    from simulators.modbus import ModbusSimulator

    sim = ModbusSimulator(host="127.0.0.1", port=0)
    sim.add_device(device_id=1, model="eastron-sdm630", seed=1)
    sim.start()
    yield sim.port
    sim.stop()


def test_a_running_park_logs_no_secret(
    db: str, own_broker: MosquittoBroker, modbus_meter: int, unique_id: str, tmp_path: Path
) -> None:
    """Gateway, ingest and the alert engine run with passwords in every URL; the broker restarts under
    them and a webhook (password and access token in its URL) keeps failing."""
    park = unique_id
    broker = own_broker
    with psycopg.connect(db, autocommit=True) as conn:
        import_registry(
            conn,
            ParkFile.model_validate(
                {
                    "park": {"id": park, "name": "secrets park"},
                    "firms": [
                        {
                            "id": f"{park}-f1",
                            "name": "firm",
                            "land_mu": 10,
                            "gateways": [
                                {
                                    "id": f"{park}-gw1",
                                    "devices": [{"id": "m1", "kind": "meter", "profile": "eastron-sdm630"}],
                                }
                            ],
                        }
                    ],
                }
            ),
        )
        hook = f"http://hub:{HOOK_PW}@127.0.0.1:{free_port()}/hook?park={park}&access_token={HOOK_TOKEN}"
        conn.execute(
            "INSERT INTO webhook_subscriptions (name, url, secret, park_id) VALUES ('hub', %s, %s, %s)",
            (hook, "hmac-key-0123456789abcdef", park),
        )
    params = conninfo.conninfo_to_dict(db)
    db_kv = f"{db} password={DB_PW}"  # trust auth: the password is sent and ignored
    db_url = f"postgresql://:{DB_PW}@{params['host']}:{params['port']}/{params['dbname']}"
    mqtt_url = f"mqtt://ingest:{MQTT_PW}@127.0.0.1:{broker.port}"

    gw_cfg = tmp_path / "gw.yaml"
    gw_cfg.write_text(
        yaml.safe_dump(
            {
                "gateway": {"park": park, "firm": f"{park}-f1", "id": f"{park}-gw1"},
                "uplink": {
                    "url": f"mqtt://{park}-gw1:{GW_PW}@127.0.0.1:{broker.port}",
                    "reconnect_min_s": 0.5,
                    "reconnect_max_s": 1,
                },
                "spool": {"path": str(tmp_path / "spool.db")},
                "batching": {"max_readings": 500, "max_age_s": 0.5},
                "http": {"listen": None},
                "buses": [{"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": modbus_meter}],
                "devices": [
                    {"id": "m1", "bus": "lan", "device_id": 1, "profile": "eastron-sdm630", "interval_s": 1.0}
                ],
            }
        ),
        encoding="utf-8",
    )
    logs = {name: tmp_path / f"{name}.log" for name in ("gateway", "ingest", "alerts")}
    env = _env()
    procs = [
        _start(
            [
                str(BIN / "parkpulse"),
                "ingest",
                "run",
                "--database-url",
                db_kv,
                "--mqtt-url",
                mqtt_url,
                "--http-port",
                "0",
                "--client-id",
                f"pp-ingest-{park}",
            ],
            logs["ingest"],
            env,
        ),
        _start(
            [
                str(BIN / "parkpulse"),
                "alerts",
                "run",
                "--database-url",
                db_url,
                "--mqtt-url",
                mqtt_url,
                "--park",
                park,
                "--group",
                f"alerts-{park}",
            ],
            logs["alerts"],
            {
                **env,
                "PARKPULSE_ALERTS_WEBHOOK_POLL_S": "0.2",
                "PARKPULSE_ALERTS_WEBHOOK_BACKOFF_BASE_S": "0.2",
                "PARKPULSE_ALERTS_WEBHOOK_BACKOFF_MAX_S": "0.5",
            },
        ),
        _start([str(BIN / "parkpulse-gateway"), "run", "-c", str(gw_cfg)], logs["gateway"], env),
    ]
    all_logs = [*logs.values(), broker.data_dir / "mosquitto.log"]
    try:
        with psycopg.connect(db, autocommit=True) as conn:

            def stored() -> bool:
                return bool(
                    conn.execute("SELECT count(*) FROM v_readings WHERE park_id = %s", (park,)).fetchone()[0]
                )

            _wait("no reading stored", stored, 60, all_logs)
            conn.execute(
                "SELECT pp_alert_fire('gateway-offline', 1, 'data_gap', 'warning', %s, NULL, 'g', NULL, NULL, 'g', 1, "
                "NULL, NULL, '网关离线', 'gateway offline', '{}')",
                (park,),
            )

            def failed_twice() -> bool:
                row = conn.execute("SELECT max(attempts) FROM webhook_outbox").fetchone()
                return bool(row and row[0] and row[0] >= 2)

            _wait("the webhook was not tried twice", failed_twice, 30, all_logs)
            broker.restart(down_for=1.0)
            n = conn.execute("SELECT count(*) FROM v_readings WHERE park_id = %s", (park,)).fetchone()[0]
            _wait(
                "no reading stored after the broker restart",
                lambda: (
                    conn.execute("SELECT count(*) FROM v_readings WHERE park_id = %s", (park,)).fetchone()[0]
                    > n
                ),
                60,
                all_logs,
            )
            last_errors = " ".join(str(r[0]) for r in conn.execute("SELECT last_error FROM webhook_outbox"))
    finally:
        for p in procs:
            _stop(p)
    texts = {p.name: p.read_text(encoding="utf-8", errors="replace") for p in all_logs if p.exists()}
    assert set(texts) >= {"gateway.log", "ingest.log", "alerts.log", "mosquitto.log"}
    for name, text in texts.items():
        _assert_no_secret(name, text)
    _assert_no_secret("webhook_outbox.last_error", last_errors)
    # the URLs were logged, redacted: the search above looked at the right lines
    assert f"{park}-gw1:***@127.0.0.1:{broker.port}" in texts["gateway.log"]
    assert "disconnected from" in texts["gateway.log"]
    assert (
        f"mqtt://ingest:***@127.0.0.1:{broker.port}" in texts["ingest.log"]
        and "password=***" in texts["ingest.log"]
    )
    assert "hub:***@127.0.0.1" in texts["alerts.log"] and "access_token=***" in texts["alerts.log"]
