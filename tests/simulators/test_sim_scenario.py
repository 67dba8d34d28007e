"""Scenario files, the virtual park and the `parkpulse-sim park` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from pymodbus.client import ModbusSerialClient, ModbusTcpClient

from parkpulse.registry import ParkFile, load_park_file
from parkpulse.services import MosquittoBroker
from simulators.errors import ScenarioError
from simulators.modbus import MODELS
from simulators.park import Park
from simulators.scenario import load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "simulators" / "scenarios" / "demo-park.yaml"
MANIFEST_KEYS = {
    "gateway",
    "device",
    "model",
    "transport",
    "host",
    "port",
    "device_id",
    "serial_port",
    "topic",
}


def test_demo_park_is_a_valid_registry_file_once_stripped(tmp_path: Path) -> None:
    sc = load_scenario(DEMO)
    stripped = tmp_path / "park.yaml"
    stripped.write_text(yaml.safe_dump(sc.registry_dict(), allow_unicode=True), encoding="utf-8")
    pf = load_park_file(stripped)  # raises ValidationReport with paths if not
    assert isinstance(pf, ParkFile)

    def keys(node: object) -> set[str]:
        if isinstance(node, dict):
            return set(node) | {k for v in node.values() for k in keys(v)}
        if isinstance(node, list):
            return {k for v in node for k in keys(v)}
        return set()

    assert {"model", "sim"} <= keys(sc.raw)
    assert not {"model", "sim"} & keys(sc.registry_dict())


def test_demo_park_has_what_the_demo_needs() -> None:
    sc = load_scenario(DEMO)
    pf = ParkFile.model_validate(sc.registry_dict())
    assert len(pf.firms) >= 12 and len(pf.clusters) == 3
    assert {f.cluster for f in pf.firms} == {c.id for c in pf.clusters}
    assert all(f.name_en and f.land_mu > 0 and f.workshops for f in pf.firms)
    today = date(2026, 11, 25)
    assert any(f.production_start and (today - f.production_start).days < 730 for f in pf.firms)
    assert any(f.size_class == "below_scale" for f in pf.firms)
    assert any(len(f.gateways) >= 2 for f in pf.firms)
    assert all(f.gateways for f in pf.firms)
    devices = sc.devices()
    assert set(MODELS) <= {d.model for d in devices} and "line-sensor" in {d.model for d in devices}
    assert all(d.registry.get("profile") == d.model for d in devices)
    assert any(d.params.get("timeout_ratio", 0) > 0 for d in devices)
    assert any(d.transport == "rtu" for d in devices)
    cems = [d for d in devices if d.kind == "cems"]
    assert cems and all(d.registry.get("source_type") for d in cems)
    assert any(d.params.get("exceed_every_s", 1) > 0 for d in cems)
    outages = [g for g in sc.gateways if "uplink_outage" in g.sim]
    assert [g.sim["uplink_outage"] for g in outages] == [{"after_s": 40, "for_s": 30}]
    ids = [sc.park_id, *(f.id for f in pf.firms), *(g.id for g in sc.gateways), *(d.id for d in devices)]
    assert all(i == i.lower() for i in ids)


def test_bad_scenario_lists_every_problem_with_its_path() -> None:
    raw = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    gw = raw["firms"][0]["gateways"][0]
    gw["devices"][0]["model"] = "no-such-meter"
    gw["devices"][1]["sim"] = {"transport": "carrier-pigeon"}
    raw["firms"][1]["gateways"][0]["devices"][0]["sim"]["faults"] = [{"at_s": -1, "fault": "counter_reset"}]
    raw["firms"][2]["id"] = "Xinjie"
    raw["firms"][6]["gateways"][0]["devices"][1]["sim"] = {"timeout_rato": 0.2}  # a typo
    raw["firms"][10]["gateways"][0]["devices"][2]["sim"]["exceed_factor"] = "high"
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(raw, "demo")
    paths = {p for p, _, _ in exc.value.problems}
    assert "firms[0].gateways[0].devices[0].model" in paths
    assert "firms[0].gateways[0].devices[1].sim.transport" in paths
    assert "firms[1].gateways[0].devices[0].sim.faults[0].at_s" in paths
    assert "firms[2].id" in paths
    assert "firms[6].gateways[0].devices[1].sim.timeout_rato" in paths
    assert "firms[10].gateways[0].devices[2].sim.exceed_factor" in paths
    assert "no-such-meter" in str(exc.value)


def test_park_starts_everything_and_the_manifest_is_reachable(
    broker: MosquittoBroker, unique_id: str
) -> None:
    raw = {
        "park": {"id": unique_id, "name": "测试园区"},
        "clusters": [{"id": "c1", "name": "集群"}],
        "firms": [
            {
                "id": f"{unique_id}-f1",
                "name": "一号厂",
                "cluster": "c1",
                "land_mu": 10,
                "workshops": [{"id": f"{unique_id}-w1", "name": "车间"}],
                "gateways": [
                    {
                        "id": f"{unique_id}-gw1",
                        "sim": {"uplink_outage": {"after_s": 40, "for_s": 30}, "rtu": {"baudrate": 38400}},
                        "devices": [
                            {
                                "id": "m1",
                                "kind": "meter",
                                "profile": "eastron-sdm630",
                                "model": "eastron-sdm630",
                                "meter_level": 1,
                                "carrier": "electricity",
                                "sim": {"faults": [{"at_s": 0.5, "fault": "counter_reset"}]},
                            },
                            {
                                "id": "m2",
                                "kind": "meter",
                                "profile": "generic-meter",
                                "model": "generic-meter",
                                "sim": {"unit_id": 7},
                            },
                            {
                                "id": "r1",
                                "kind": "meter",
                                "profile": "acrel-adl400",
                                "model": "acrel-adl400",
                                "sim": {"transport": "rtu"},
                            },
                            {
                                "id": "line-1",
                                "kind": "line",
                                "profile": "line-sensor",
                                "model": "line-sensor",
                                "workshop": f"{unique_id}-w1",
                                "sim": {"interval_s": 0.2, "line_id": unique_id},
                            },
                        ],
                    }
                ],
            }
        ],
    }
    ParkFile.model_validate(parse_scenario(raw).registry_dict())
    got: list[dict] = []
    sub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, m: got.append(json.loads(m.payload))
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe(f"factory/{unique_id}/telemetry", qos=1)
    sub.loop_start()
    try:
        with Park(parse_scenario(raw), broker_url=broker.url) as park:
            m = park.manifest()
            devs = {d["device"]: d for d in m["devices"]}
            assert all(set(d) >= MANIFEST_KEYS for d in m["devices"])
            assert (
                devs["m1"]["transport"] == "tcp"
                and devs["m1"]["device_id"] == 1
                and devs["m2"]["device_id"] == 7
            )
            assert devs["m1"]["port"] == devs["m2"]["port"]  # many ids on one port per gateway
            assert devs["r1"]["transport"] == "rtu" and devs["r1"]["serial_port"].startswith("/dev/")
            assert devs["line-1"]["topic"] == f"factory/{unique_id}/telemetry"
            assert m["gateways"][0]["sim"]["uplink_outage"] == {"after_s": 40, "for_s": 30}
            c = ModbusTcpClient("127.0.0.1", port=devs["m1"]["port"], timeout=0.5, retries=0)
            c.connect()
            assert not c.read_input_registers(0x48, count=2, device_id=1).isError()
            assert not c.read_holding_registers(120, count=2, device_id=7).isError()
            c.close()
            s = ModbusSerialClient(devs["r1"]["serial_port"], baudrate=38400, timeout=0.5, retries=0)
            s.connect()
            assert not s.read_holding_registers(0x000A, count=2, device_id=1).isError()
            s.close()
            deadline = time.monotonic() + 5
            while (
                not got or park.modbus_devices[(f"{unique_id}-gw1", "m1")].truth()["elec_import_kwh"] > 1
            ) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert got, "no line telemetry"
            assert (
                park.modbus_devices[(f"{unique_id}-gw1", "m1")].truth()["elec_import_kwh"] < 1
            )  # the scheduled reset ran
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_park_command_writes_the_manifest_and_stops_on_sigterm(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulators.cli",
            "park",
            "--scenario",
            str(DEMO),
            "--manifest",
            str(manifest),
            "--broker",
            "mqtt://127.0.0.1:9",
        ],  # nothing listens: line sensors retry quietly
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not manifest.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert manifest.exists(), proc.stderr.read() if proc.poll() is not None else "no manifest"
        m = json.loads(manifest.read_text(encoding="utf-8"))
        assert len(m["devices"]) == len(load_scenario(DEMO).devices())
        tcp = next(d for d in m["devices"] if d["transport"] == "tcp")
        c = ModbusTcpClient(tcp["host"], port=tcp["port"], timeout=1, retries=0)
        assert c.connect()
        c.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped" in out


def test_meter_command_serves_and_exits(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulators.cli",
            "meter",
            "--model",
            "schneider-iem3255",
            "--port",
            "0",
            "--count",
            "3",
            "--duration",
            "0.5",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "3 × schneider-iem3255" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "simulators.cli", "meter", "--model", "nope", "--duration", "0.1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "unknown model 'nope'" in bad.stderr
