"""The `cases` of gateway/sources/opcua/testcases.yaml: one OPC UA value -> the row the gateway sends.

(The `invalid` configs of the same file are run for every plugin by test_gw_plugin_cases.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.counters import CounterTracker
from gateway.sources.opcua import NodeSpec, OpcuaNode, status_quality, to_row
from parkpulse.catalogue import load_catalogue
from parkpulse.wire import Quality

CASES: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "gateway/sources/opcua/testcases.yaml").read_text(encoding="utf-8")
)["cases"]
NOW_MS = 1_800_000_000_000


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_opcua_case(case: dict[str, Any]) -> None:
    assert case.get("expect"), "a case must expect a row"
    node = OpcuaNode.model_validate(case["node"])
    spec = NodeSpec.of("l1", node, load_catalogue().by_name()[node.metric])
    out = to_row(
        spec,
        case["value"],
        status=case.get("status", 0),
        source_ms=case.get("source_ms"),
        server_ms=case.get("server_ms"),
        now_ms=NOW_MS,
        max_skew_s=300,
        counters=None,
    )
    assert out.row == pytest.approx(case["expect"]) if out.row[3] is not None else out.row == case["expect"]
    if "problem" in case:
        assert out.problem is not None and case["problem"] in out.problem
    else:
        assert out.problem is None


def test_status_code_severity() -> None:
    assert status_quality(0) == Quality.GOOD
    assert status_quality(0x40000000) == Quality.UNCERTAIN
    assert status_quality(0x80340000) == Quality.BAD  # BadNodeIdUnknown


def test_counter_reset_on_the_machine_is_flagged() -> None:
    node = OpcuaNode(node="ns=2;s=l1.Good", metric="good_count")
    spec = NodeSpec.of("l1", node, load_catalogue().by_name()["good_count"])
    tracker = CounterTracker()
    rows = [
        to_row(
            spec,
            v,
            status=0,
            source_ms=NOW_MS + i,
            server_ms=None,
            now_ms=NOW_MS,
            max_skew_s=300,
            counters=tracker,
        ).row
        for i, v in enumerate([5000, 5010, 3])
    ]
    assert [len(r) for r in rows] == [5, 5, 6]
    assert rows[2][5] == {"event": "reset", "prev": 5010.0, "correction": 5010.0}


INVALID: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "gateway/sources/opcua/testcases.yaml").read_text(encoding="utf-8")
)["invalid"]
BASE: dict[str, Any] = {
    "gateway": {"park": "p", "firm": "f", "id": "g"},
    "uplink": {"url": "mqtt://127.0.0.1:1883"},
    "spool": {"path": "x.db"},
}


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["name"])
def test_opcua_invalid_config_is_refused_with_every_error(case: dict[str, Any]) -> None:
    """The same check test_gw_plugin_cases.py runs for every plugin, for this one alone."""
    from gateway.config import parse_config
    from parkpulse.errors import ValidationReport

    with pytest.raises(ValidationReport) as ei:
        parse_config({**BASE, **case["config"]})
    got = ei.value.problems
    assert sorted(p.path for p in got) == sorted(e["path"] for e in case["errors"]), [str(p) for p in got]
    for e in case["errors"]:
        assert any(p.path == e["path"] and e["message"] in p.reason for p in got), (e, [str(p) for p in got])


def test_sample_is_a_valid_part_of_a_gateway_file() -> None:
    from gateway.config import parse_config

    sample = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "gateway/sources/opcua/sample.yaml").read_text(
            encoding="utf-8"
        )
    )
    cfg = parse_config({**BASE, **sample})
    assert cfg.opcua[0].devices[0].nodes[0].value_map == {
        100: "off",
        110: "idle",
        120: "running",
        130: "fault",
        140: "planned_stop",
    }
