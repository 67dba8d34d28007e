"""The test cases shipped in each source plugin's folder (gateway/sources/*/testcases.yaml).

`cases` are inputs with the output the plugin must produce; `invalid` are configs the gateway
must refuse, each with every error it reports (path in the file and a part of the message),
like Telegraf's `init.err`. A case that expects nothing is itself an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import GatewayConfig, parse_config
from gateway.sources import PLUGINS, SourceKeys, registered_sources
from gateway.sources.modbus import decode_request, plan_device
from gateway.sources.mqtt import MqttTopic, map_message
from parkpulse.catalogue import load_catalogue
from parkpulse.errors import ValidationReport

SOURCES = Path(__file__).resolve().parents[2] / "gateway" / "sources"
BASE: dict[str, Any] = {
    "gateway": {"park": "p", "firm": "f", "id": "g"},
    "uplink": {"url": "mqtt://127.0.0.1:1883"},
    "spool": {"path": "x.db"},
}


def _doc(plugin: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((SOURCES / plugin / "testcases.yaml").read_text(encoding="utf-8"))
    return doc


def _cases(plugin: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = _doc(plugin)["cases"]
    return cases


def _invalid() -> list[Any]:
    return [
        pytest.param(c, id=f"{name}: {c['name']}")
        for name in registered_sources()
        for c in _doc(name).get("invalid") or []
    ]


def test_every_plugin_folder_has_readme_sample_and_cases() -> None:
    plugins = registered_sources()
    assert {"modbus", "mqtt"} <= set(plugins)
    for name in plugins:
        for f in ("README.md", "sample.yaml", "testcases.yaml"):
            assert (SOURCES / name / f).is_file(), f"{name}/{f}"
        assert _doc(name).get("invalid"), f"{name}/testcases.yaml has no invalid configs"


@pytest.mark.parametrize("plugin", sorted(registered_sources()))
def test_plugin_sample_is_a_valid_part_of_a_gateway_file(plugin: str) -> None:
    sample = yaml.safe_load((SOURCES / plugin / "sample.yaml").read_text(encoding="utf-8"))
    keys = next(k for k in PLUGINS if k.plugin.name == plugin)
    assert sample and set(sample) <= set(keys.model_fields), (
        f"{plugin}/sample.yaml uses keys the plugin does not own"
    )
    parse_config({**BASE, **sample})


def test_every_key_has_one_owner() -> None:
    # a plugin key that another plugin, or the shared part, also declares would silently replace it
    owned = [name for k in PLUGINS for name in k.model_fields]
    assert len(owned) == len(set(owned)) == len(SourceKeys.model_fields)
    shared = set(GatewayConfig.model_fields) - set(owned)
    assert shared == {"gateway", "uplink", "spool", "batching", "http", "log_level", "managed"}


@pytest.mark.parametrize("case", _cases("modbus"), ids=lambda c: c["name"])
def test_modbus_case(case: dict[str, Any]) -> None:
    assert case.get("expect"), "a case must expect at least one value"
    cfg = parse_config(
        {
            **BASE,
            "buses": [{"name": "lan", "type": "tcp", "host": "127.0.0.1"}],
            "devices": [
                {
                    "id": "d",
                    "bus": "lan",
                    "device_id": 1,
                    "profile": case["profile"],
                    "scale": case.get("scale", {}),
                }
            ],
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
    assert set(case["expect"]) <= set(got), f"not read by the profile: {set(case['expect']) - set(got)}"
    for metric, want in case["expect"].items():
        assert got[metric] == pytest.approx(want, rel=1e-6), metric


@pytest.mark.parametrize("case", _cases("mqtt"), ids=lambda c: c["name"])
def test_mqtt_case(case: dict[str, Any]) -> None:
    assert case.get("expect"), "a case must expect at least one reading"
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


@pytest.mark.parametrize("case", _invalid())
def test_invalid_config_is_refused_with_every_error(case: dict[str, Any]) -> None:
    want = case.get("errors")
    assert want, "an invalid config must expect at least one error"
    with pytest.raises(ValidationReport) as ei:
        parse_config({**BASE, **case["config"]})
    got = ei.value.problems
    assert sorted(p.path for p in got) == sorted(e["path"] for e in want), [str(p) for p in got]
    for e in want:
        assert any(p.path == e["path"] and e["message"] in p.reason for p in got), (e, [str(p) for p in got])
