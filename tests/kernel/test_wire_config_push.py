"""The managed-configuration envelope: what the platform pushes and what a gateway accepts."""

from __future__ import annotations

import orjson
import pytest

from parkpulse.wire import (
    LOCAL_ONLY_KEYS,
    ConfigState,
    Status,
    config_digest,
    config_payload,
    config_topic,
    parse_config_push,
)

CFG = {"devices": [{"id": "m1", "bus": "b", "device_id": 1, "profile": "generic-meter"}]}
PROFILES = {"modbus": {"generic-meter": {"registers": []}}}


def test_round_trip_keeps_version_digest_and_content() -> None:
    raw = config_payload(
        "gw-1", 7, CFG, PROFILES, issued_by="op@firm", reason="add m1", now_ms=1_700_000_000_000
    )
    push = parse_config_push(raw, "gw-1")
    assert (push.version, push.config, push.profiles) == (7, CFG, PROFILES)
    assert push.sha256 == config_digest(CFG, PROFILES) and len(push.sha256) == 64
    assert (push.issued_by, push.reason, push.issued_at) == ("op@firm", "add m1", 1_700_000_000_000)
    assert config_topic("p1", "f1", "gw-1") == "pp/v1/p1/f1/gw-1/config"


def test_the_digest_ignores_key_order() -> None:
    a = {"buses": [1], "devices": [2]}
    b = {"devices": [2], "buses": [1]}
    assert config_digest(a, {}) == config_digest(b, {})


@pytest.mark.parametrize("key", sorted(LOCAL_ONLY_KEYS))
def test_local_only_keys_are_refused_on_both_sides(key: str) -> None:
    with pytest.raises(ValueError, match=f"local-only keys cannot be pushed \\(got {key}\\)"):
        config_payload("gw-1", 1, {key: {}}, issued_by="x")
    doc = orjson.loads(config_payload("gw-1", 1, {}, issued_by="x"))
    doc["config"] = {key: {}}
    doc["sha256"] = config_digest(doc["config"], {})
    with pytest.raises(ValueError, match="local-only"):
        parse_config_push(orjson.dumps(doc), "gw-1")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"gateway": "gw-2"}, "gateway"),
        ({"v": 2}, "v"),
        ({"version": 0}, "version"),
        ({"version": 2**63}, "version"),
        ({"version": True}, "version"),
        ({"config": []}, "config"),
        ({"profiles": {"modbus": []}}, "profiles.modbus"),
        ({"sha256": "0" * 64}, "sha256"),
        ({"issued_at": "yesterday"}, "issued_at"),
    ],
)
def test_a_bad_push_names_its_field(change: dict[str, object], field: str) -> None:
    doc = orjson.loads(config_payload("gw-1", 3, CFG, PROFILES, issued_by="x"))
    doc.update(change)
    with pytest.raises(ValueError, match=f"^{field}:"):
        parse_config_push(orjson.dumps(doc), "gw-1")


def test_garbage_and_oversized_payloads_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^payload: not JSON"):
        parse_config_push(b"\x00\xff", "gw-1")
    with pytest.raises(ValueError, match=r"^payload: .* bytes, more than"):
        parse_config_push(b" " * 1_000_001, "gw-1")
    with pytest.raises(ValueError, match=r"^config: .* bytes, more than"):
        config_payload("gw-1", 1, {"devices": ["x" * 1_000_000]}, issued_by="x")


def test_status_carries_the_config_state() -> None:
    st = Status.model_validate(
        {
            "gateway": "gw-1",
            "state": "online",
            "config": {
                "mode": "managed",
                "desired_version": 4,
                "applied_version": 3,
                "state": "rolled_back",
                "reason": "broker unreachable for 300 s after applying 4",
            },
        }
    )
    assert isinstance(st.config, ConfigState) and st.config.applied_version == 3
    with pytest.raises(ValueError):
        Status.model_validate({"gateway": "gw-1", "state": "online", "config": {"mode": "remote"}})
    with pytest.raises(ValueError):
        ConfigState.model_validate({"mode": "local", "reason": "bad\x1b[31m"})
