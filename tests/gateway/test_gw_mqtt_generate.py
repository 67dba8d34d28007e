"""The MQTT line-sensor source, and configs generated from a simulator scenario file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from test_gw_helpers import RunningGateway, collector, make_config
from typer.testing import CliRunner

from gateway.check import check_all
from gateway.cli import app
from gateway.config import load_config
from gateway.sources.mqtt import MqttTopic, map_message
from parkpulse.registry import load_park_file

ROOT = Path(__file__).resolve().parents[2]


def test_line_sensor_json_mapped_to_catalogue_metrics(broker: Any, unique_id: str, tmp_path: Path) -> None:
    from simulators.mqtt_sensors import LineSensor

    sensor = LineSensor(f"{unique_id}-line", broker_url=broker.url, interval_s=0.2, seed=4)
    cfg = make_config(
        park=unique_id,
        broker_url=broker.url,
        spool=tmp_path / "spool.db",
        buses=[],
        devices=[],
        mqtt_sources=[
            {
                "name": "lines",
                "url": broker.url,
                "topics": [
                    {
                        "topic": sensor.topic,
                        "device": "line-1",
                        "fields": {
                            "state": "machine_state",
                            "good": "good_count",
                            "reject": "reject_count",
                            "ideal_rate": "ideal_rate_pcs_h",
                        },
                    }
                ],
            }
        ],
    )
    with collector(broker.port, unique_id) as col, RunningGateway(cfg):
        import time

        time.sleep(0.5)  # the gateway subscribes before the sensor starts publishing
        sensor.start()
        try:
            assert col.wait(lambda c: len({r[1] for r in c.readings()}) == 4, 15)
            truth = sensor.truth()
        finally:
            sensor.stop()
    rows = col.readings()
    assert {r[0] for r in rows} == {"line-1"}
    assert {r[1] for r in rows} == {"machine_state", "good_count", "reject_count", "ideal_rate_pcs_h"}
    assert all(r[4] == 0 for r in rows)
    good = [r[3] for r in rows if r[1] == "good_count"]
    assert good == sorted(good) and good[-1] <= truth["good_count"]


def test_sensor_clock_drift_and_bad_fields() -> None:
    t = MqttTopic(topic="x", device="l1", fields={"good": "good_count", "state": "machine_state"})
    now = 1_800_000_000_000
    rows, problems = map_message(
        t,
        b'{"ts": 1000, "good": 5, "state": "run"}',
        now_ms=now,
        counters=None,
        cumulative={"good_count"},
        limits={},
    )
    assert rows[0][2] == now and rows[0][4] == 3, "a drifting sensor clock: arrival time, quality uncertain"
    assert any("state" in p for p in problems) and any(r[1] == "machine_state" and r[4] == 4 for r in rows)
    rows, problems = map_message(t, b"not json", now_ms=now, counters=None, cumulative=set(), limits={})
    assert rows == [] and problems


def test_generate_from_scenario_and_manifest(broker: Any, tmp_path: Path) -> None:
    from simulators.park import Park, write_manifest
    from simulators.scenario import load_scenario

    scenario = ROOT / "simulators/scenarios/demo-park.yaml"
    sc = load_scenario(scenario)
    with Park(sc, broker_url=broker.url) as vp:
        manifest = tmp_path / "manifest.json"
        write_manifest(vp.manifest(), manifest)
        out = tmp_path / "out"
        res = CliRunner().invoke(
            app,
            [
                "generate",
                "--scenario",
                str(scenario),
                "--manifest",
                str(manifest),
                "--out",
                str(out),
                "--uplink-url",
                broker.url,
            ],
        )
        assert res.exit_code == 0, res.output
        park = load_park_file(out / "park.yaml")
        text = (out / "park.yaml").read_text()
        assert "model:" not in text and "sim:" not in text
        raw = yaml.safe_load(text)
        n_gw = sum(len(f.gateways) for f in park.firms)
        configs = sorted(p for p in out.glob("*.yaml") if p.name != "park.yaml")
        assert (
            len(configs)
            == n_gw
            == len(raw["firms"][0]["gateways"]) + sum(len(f["gateways"]) for f in raw["firms"][1:])
        )
        # every generated config is valid and its Modbus devices answer
        cfg = load_config(out / "huaxin-gw1.yaml")
        assert cfg.gateway.park == park.park.id and cfg.gateway.firm == "huaxin-opto"
        assert {d.id for d in cfg.devices} == {"main-incomer", "smt-feeder"}
        assert [t.device for s in cfg.mqtt for t in s.topics] == ["smt-line-1"]
        results = asyncio.run(check_all(cfg, wait_s=8))
        assert all(r.error is None for r in results), [(r.device, r.error) for r in results]
        rtu_cfg = load_config(out / "ruitong-gw1.yaml")
        assert rtu_cfg.buses[0].type == "rtu"
        results = asyncio.run(check_all(rtu_cfg))
        assert all(r.error is None for r in results), [(r.device, r.error) for r in results]
