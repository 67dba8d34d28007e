"""The versioned store of desired configurations and the profile library, on a real PostgreSQL."""

from __future__ import annotations

import copy

import pytest
from platform_testkit import PARK_PROFILE, Registry, config

import fleet
from parkpulse.errors import FieldError
from parkpulse.wire import config_digest


def test_set_desired_versions_history_and_who_when_why(registry: Registry) -> None:
    with registry.conn() as conn:
        assert fleet.desired(conn, registry.gw) is None
        v1 = fleet.set_desired(conn, registry.gw, config(), by="li.wei", reason="first managed config")
        v2 = fleet.set_desired(
            conn,
            registry.gw,
            config({"id": "pump", "profile": "generic-meter"}),
            by="wang.fang",
            reason="add pump",
        )
        assert (v1.version, v2.version) == (1, 2)
        assert fleet.desired(conn, registry.gw) == v2
        hist = fleet.history(conn, registry.gw)
        assert [(v.version, v.created_by, v.reason) for v in hist] == [
            (2, "wang.fang", "add pump"),
            (1, "li.wei", "first managed config"),
        ]
        assert hist[0].created_at >= hist[1].created_at
        # the stored digest is the wire's digest of what is stored, and the used profiles are frozen with it
        assert v2.sha256 == config_digest(v2.config, v2.profiles)
        assert sorted(v2.profiles["modbus"]) == ["eastron-sdm630", "generic-meter"]
        assert v2.profiles["modbus"]["generic-meter"]["registers"][0]["metric"] == "voltage_l1_v"
        # other gateways are untouched
        assert fleet.desired(conn, registry.gw2) is None
        notified = conn.execute(
            "SELECT count(*) FROM fleet_configs WHERE gateway_id = %s", (registry.gw,)
        ).fetchone()
        assert notified == (2,)


def test_invalid_config_is_refused_with_every_problem_and_nothing_stored(registry: Registry) -> None:
    bad = config(
        {"id": "pump", "profile": "no-such-meter"},
        {"id": "incomer", "profile": "generic-meter", "device_id": 1},
        log_level="LOUD",
    )
    with registry.conn() as conn, pytest.raises(fleet.ConfigRejected) as exc:
        fleet.set_desired(conn, registry.gw, bad, by="li.wei", reason="")
    found = {(p.path, str(p.value)) for p in exc.value.problems}
    assert ("reason", "") in found
    assert ("log_level", "LOUD") in found
    assert ("devices[1].profile", "no-such-meter") in found
    assert ("devices[2].id", "incomer") in found
    assert ("devices[2].device_id", "1") in found
    assert "devices[1].profile" in str(exc.value) and "no-such-meter" in str(exc.value)
    with registry.conn() as conn:
        assert fleet.history(conn, registry.gw) == []


@pytest.mark.parametrize(
    ("top", "path"),
    [
        ({"uplink": {"url": "mqtt://evil:1883"}}, "uplink"),
        ({"spool": {"path": "/tmp/x.db"}}, "spool"),
        ({"profiles_dir": "/etc/parkpulse/profiles"}, "profiles_dir"),
        ({"no_such_key": 1}, "no_such_key"),
    ],
)
def test_local_only_and_unknown_keys_are_refused(
    registry: Registry, top: dict[str, object], path: str
) -> None:
    with registry.conn() as conn, pytest.raises(fleet.ConfigRejected) as exc:
        fleet.set_desired(conn, registry.gw, config(**top), by="li.wei", reason="try")
    assert [p.path for p in exc.value.problems] == [path]


def test_unknown_gateway_is_named(registry: Registry) -> None:
    with registry.conn() as conn, pytest.raises(fleet.UnknownGateway, match="no-such-gw"):
        fleet.set_desired(conn, "no-such-gw", config(), by="li.wei", reason="x")


def test_rollback_makes_a_new_version_equal_to_the_old_one(registry: Registry) -> None:
    with registry.conn() as conn:
        v1 = fleet.set_desired(conn, registry.gw, config(), by="a", reason="one")
        v2 = fleet.set_desired(
            conn, registry.gw, config({"id": "pump", "profile": "generic-meter"}), by="a", reason="two"
        )
        v3 = fleet.rollback(conn, registry.gw, 1, by="b", reason="pump meter broke the bus")
        assert (v3.version, v3.rollback_of, v3.created_by) == (3, 1, "b")
        assert (v3.config, v3.profiles, v3.sha256) == (v1.config, v1.profiles, v1.sha256)
        assert v3.sha256 != v2.sha256
        with pytest.raises(fleet.UnknownVersion, match="no config version 9"):
            fleet.rollback(conn, registry.gw, 9, by="b", reason="x")
        with pytest.raises(fleet.ConfigRejected, match="reason"):
            fleet.rollback(conn, registry.gw, 2, by="b", reason=" ")
        assert [v.version for v in fleet.history(conn, registry.gw)] == [3, 2, 1]


def test_diff_is_a_unified_diff_of_the_yaml(registry: Registry) -> None:
    with registry.conn() as conn:
        v1 = fleet.set_desired(conn, registry.gw, config(), by="a", reason="one")
        changed = config()
        changed["devices"][0]["interval_s"] = 15
        v2 = fleet.set_desired(conn, registry.gw, changed, by="a", reason="slower")
    d = fleet.diff(v1, v2)
    assert d.startswith(f"--- {registry.gw} v1\n+++ {registry.gw} v2\n")
    assert "-  interval_s: 5\n" in d and "+  interval_s: 15\n" in d
    assert "profiles" not in d  # same profiles
    first = fleet.diff(None, v1)
    assert f"--- {registry.gw} (none)" in first and "+devices:" in first and "profiles" in first


def test_secrets_are_masked_when_shown_and_kept_when_sent_back_masked(registry: Registry) -> None:
    mqtt_src = {
        "name": "plc",
        "url": "mqtt://10.0.0.5:1883",
        "username": "plc",
        "password": "s3cret-pw",
        "topics": [{"topic": "plc/line-1", "device": "line-1", "fields": {"state": "machine_state"}}],
    }
    with registry.conn() as conn:
        try:
            v1 = fleet.set_desired(conn, registry.gw, config(mqtt=[mqtt_src]), by="a", reason="plc")
        except fleet.ConfigRejected as exc:  # show the validator's view if the mqtt source's keys differ
            pytest.fail(str(exc))
        shown = v1.redacted()
        assert shown["mqtt"][0]["password"] == fleet.MASK and "s3cret-pw" not in fleet.to_yaml(shown)
        assert "s3cret-pw" not in fleet.diff(None, v1)
        # the console sends the masked document back with another change: the password is kept
        edited = copy.deepcopy(shown)
        edited["devices"][0]["interval_s"] = 10
        v2 = fleet.set_desired(conn, registry.gw, edited, by="a", reason="interval")
        assert v2.config["mqtt"][0]["password"] == "s3cret-pw"
        # a masked secret with nothing stored to keep is refused, named
        fresh = copy.deepcopy(shown)
        fresh["mqtt"][0]["name"] = "other-plc"
        with pytest.raises(fleet.ConfigRejected) as refused:
            fleet.set_desired(conn, registry.gw, fresh, by="a", reason="new plc")
        assert [p.path for p in refused.value.problems] == ["mqtt[0].password"]


def test_profile_library_versions_validation_and_use(registry: Registry) -> None:
    with registry.conn() as conn:
        builtins = {(p.source, p.name) for p in fleet.profiles.list(conn)}
        assert ("modbus", "eastron-sdm630") in builtins and ("dlt645", "dlt645-2007-generic") in builtins
        assert all(p.version == 0 for p in fleet.profiles.list(conn))
        # a config naming a profile the library does not hold yet is refused
        with pytest.raises(fleet.ConfigRejected, match=r"devices\[1\]\.profile"):
            fleet.set_desired(
                conn, registry.gw, config({"id": "pump", "profile": "acme-pump-meter"}), by="a", reason="x"
            )
        p1 = fleet.profiles.put(
            conn, "modbus", "acme-pump-meter", PARK_PROFILE, by="li.wei", reason="ACME pumps"
        )
        assert (p1.version, p1.created_by) == (1, "li.wei")
        v = fleet.set_desired(
            conn, registry.gw, config({"id": "pump", "profile": "acme-pump-meter"}), by="a", reason="x"
        )
        assert v.profiles["modbus"]["acme-pump-meter"] == PARK_PROFILE
        # a new profile version does not change the stored config version (profiles are frozen with it)
        newer = copy.deepcopy(PARK_PROFILE)
        newer["model"] = "PM-1 rev B"
        p2 = fleet.profiles.put(conn, "modbus", "acme-pump-meter", newer, by="li.wei", reason="rev B")
        assert (
            p2.version == 2
            and fleet.profiles.show(conn, "modbus", "acme-pump-meter").doc["model"] == "PM-1 rev B"
        )
        assert fleet.profiles.show(conn, "modbus", "acme-pump-meter", 1).doc["model"] == "PM-1"
        assert fleet.desired(conn, registry.gw).profiles["modbus"]["acme-pump-meter"]["model"] == "PM-1"  # type: ignore[union-attr]
        assert [p.version for p in fleet.profiles.history(conn, "modbus", "acme-pump-meter")] == [2, 1]


def test_an_invalid_profile_is_refused_with_every_problem(registry: Registry) -> None:
    bad = copy.deepcopy(PARK_PROFILE)
    bad["registers"] = [
        {"metric": "elec_import_kwh", "address": 0, "type": "f32", "unit": "MWh"},
        {"metric": "no_such_metric", "address": 1, "type": "f32", "unit": "kW"},
    ]
    with registry.conn() as conn:
        with pytest.raises(fleet.ConfigRejected) as exc:
            fleet.profiles.put(conn, "modbus", "other-name", bad, by="li.wei", reason="x")
        paths = {p.path for p in exc.value.problems}
        assert {"name", "registers[0].unit", "registers[1].metric", "registers[1].address"} <= paths
        with pytest.raises(fleet.ConfigRejected, match="source"):
            fleet.profiles.put(conn, "opcua", "x", {}, by="a", reason="x")
        assert [p for p in fleet.profiles.list(conn) if p.version > 0] == []


def test_from_yaml_names_the_line_of_a_syntax_error() -> None:
    with pytest.raises(FieldError) as exc:
        fleet.from_yaml("devices:\n  - id: [unclosed\n", "gw.yaml")
    assert "gw.yaml" in str(exc.value) and "line" in str(exc.value)
    with pytest.raises(FieldError, match="must be a mapping"):
        fleet.from_yaml("- a\n- b\n")
    assert fleet.from_yaml(fleet.to_yaml(config())) == config()


def test_the_registry_follows_the_config(registry: Registry) -> None:
    def devices() -> dict[str, tuple[object, ...]]:
        with registry.conn() as c:
            rows = c.execute(
                "SELECT device_id, kind, meter_level, poll_interval_s, enabled FROM devices WHERE gateway_id = %s",
                (registry.gw,),
            ).fetchall()
        return {r[0]: r[1:] for r in rows}

    with registry.conn() as conn:
        conn.execute(  # a boundary meter the park file registered keeps its level
            "INSERT INTO devices (gateway_id, device_id, kind, meter_level, poll_interval_s) VALUES (%s, 'incomer', 'meter', 1, 60)",
            (registry.gw,),
        )
        fleet.set_desired(
            conn,
            registry.gw,
            config({"id": "pump", "profile": "generic-meter", "interval_s": 10}),
            by="a",
            reason="x",
        )
        assert devices() == {"incomer": ("meter", 1, 5.0, True), "pump": ("meter", 3, 10.0, True)}
        fleet.set_desired(
            conn,
            registry.gw,
            config({"id": "pump", "profile": "generic-meter", "enabled": False}),
            by="a",
            reason="x",
        )
        assert devices()["pump"][3] is False
        fleet.set_desired(
            conn, registry.gw, config({"id": "pump", "profile": "generic-meter"}), by="a", reason="x"
        )
        assert devices()["pump"][3] is True
        fleet.set_desired(
            conn, registry.gw, config(), by="a", reason="pump removed"
        )  # dropped: out of service
        assert devices() == {"incomer": ("meter", 1, 5.0, True), "pump": ("meter", 3, 5.0, False)}
