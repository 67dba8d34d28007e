"""The test cases shipped in each source plugin's folder (gateway/sources/*/testcases.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import MqttTopic, parse_config
from gateway.registers import decode_request
from gateway.sources import registered_sources
from gateway.sources.modbus import plan_device
from gateway.sources.mqtt import map_message
from parkpulse.catalogue import load_catalogue

SOURCES = Path(__file__).resolve().parents[2] / "gateway" / "sources"


def _cases(plugin: str) -> list[dict[str, Any]]:
    return yaml.safe_load((SOURCES / plugin / "testcases.yaml").read_text(encoding="utf-8"))["cases"]


def test_every_plugin_folder_has_readme_sample_and_cases() -> None:
    plugins = registered_sources()
    assert {"modbus", "mqtt"} <= set(plugins)
    for name in plugins:
        for f in ("README.md", "sample.yaml", "testcases.yaml"):
            assert (SOURCES / name / f).is_file(), f"{name}/{f}"


@pytest.mark.parametrize("case", _cases("modbus"), ids=lambda c: c["name"])
def test_modbus_case(case: dict[str, Any]) -> None:
    cfg = parse_config(
        {
            "gateway": {"park": "p", "firm": "f", "id": "g"},
            "uplink": {"url": "mqtt://127.0.0.1:1883"},
            "spool": {"path": "x.db"},
            "buses": [{"name": "lan", "type": "tcp", "host": "127.0.0.1"}],
            "devices": [{"id": "d", "bus": "lan", "device_id": 1, "profile": case["profile"], "scale": case.get("scale", {})}],
        }
    )
    plan = plan_device(cfg, cfg.devices[0])
    image: dict[str, dict[int, int]] = {"holding": {}, "input": {}}
    for function, blocks in case["registers"].items():
        for addr, words in blocks.items():
            for i, w in enumerate(words):
                image[function][int(addr) + i] = int(w)
    got: dict[str, float | None] = {}
    for req in plan.requests:
        regs = [image[req.function].get(req.address + i, 0) for i in range(req.count)]
        got.update(decode_request(req, regs))
    for metric, want in case["expect"].items():
        assert got[metric] == pytest.approx(want, rel=1e-6), metric


@pytest.mark.parametrize("case", _cases("mqtt"), ids=lambda c: c["name"])
def test_mqtt_case(case: dict[str, Any]) -> None:
    cat = load_catalogue()
    topic = MqttTopic.model_validate(case["topic"])
    rows, _ = map_message(
        topic,
        case["payload"].encode(),
        now_ms=case["now_ms"],
        counters=None,
        cumulative={m.name for m in cat.metrics if m.cumulative},
        limits={m.name: (m.min, m.max) for m in cat.metrics},
    )
    assert rows == case["expect"]
