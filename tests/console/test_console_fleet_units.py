"""The fleet form's config edits and the console's secret masking, as pure functions (no database)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import fleet
from console._fleet_edits import EditRefused, add_meter, buses_of, change_device, devices_of
from console._fleet_secrets import restore_urls, shown_config

CONFIG: dict[str, Any] = {
    "buses": [{"name": "lan", "type": "tcp", "host": "10.0.0.5"}],
    "devices": [{"id": "incomer", "bus": "lan", "device_id": 1, "profile": "acrel-adl400", "interval_s": 5}],
    "dlt645_buses": [{"name": "m485", "type": "serial", "port": "/dev/ttyUSB1"}],
    "opcua": [
        {
            "name": "line1",
            "url": "opc.tcp://10.0.0.9:4840",
            "username": "gw",
            "password": "Opc-Secret-1",
            "devices": [{"id": "press", "nodes": [{"node": "ns=2;s=Count", "metric": "part_count"}]}],
        }
    ],
    "mqtt": [{"name": "b", "url": "mqtt://u:Url-Secret-2@10.0.0.7:1883", "topics": []}],
}


def test_devices_and_buses_are_listed_by_source() -> None:
    rows = {r.ref: r for r in devices_of(CONFIG)}
    assert set(rows) == {"modbus:incomer", "opcua:line1:press"}
    assert rows["modbus:incomer"].interval_s == 5 and rows["modbus:incomer"].enabled is True
    assert rows["opcua:line1:press"].enabled is None and rows["opcua:line1:press"].interval_s is None
    assert buses_of(CONFIG) == [("modbus", "lan"), ("dlt645", "m485")]


def test_add_meter_builds_the_entry_of_its_source_and_leaves_the_input_alone() -> None:
    before = copy.deepcopy(CONFIG)
    out = add_meter(
        CONFIG,
        meter_id="p1",
        bus_ref="dlt645:m485",
        unit="0000aa123456",
        profile_ref="dlt645:x",
        interval="15",
    )
    assert out["dlt645_meters"] == [
        {"id": "p1", "bus": "m485", "address": "0000AA123456", "profile": "x", "interval_s": 15}
    ]
    out = add_meter(
        CONFIG, meter_id="p2", bus_ref="modbus:lan", unit=" 7 ", profile_ref="modbus:y", interval="2.5"
    )
    assert out["devices"][-1] == {"id": "p2", "bus": "lan", "device_id": 7, "profile": "y", "interval_s": 2.5}
    assert before == CONFIG


def test_add_meter_names_every_bad_field() -> None:
    with pytest.raises(EditRefused) as err:
        add_meter(
            CONFIG, meter_id=" ", bus_ref="modbus:nope", unit="x", profile_ref="dlt645:z", interval="inf"
        )
    assert sorted(p.path for p in err.value.problems) == [
        "meter.bus",
        "meter.id",
        "meter.interval_s",
        "meter.profile",
        "meter.unit",
    ]
    with pytest.raises(EditRefused) as err:
        add_meter(CONFIG, meter_id="a", bus_ref="garbage", unit="1", profile_ref="modbus:y")
    assert [p.path for p in err.value.problems] == ["meter.bus"]


def test_change_device_interval_and_switch() -> None:
    out = change_device(CONFIG, ref="modbus:incomer", interval="30", enabled="off")
    assert out["devices"][0]["interval_s"] == 30 and out["devices"][0]["enabled"] is False
    assert "enabled" not in CONFIG["devices"][0]
    out = change_device(CONFIG, ref="opcua:line1:press", interval="10")
    assert out["opcua"][0]["devices"][0]["poll_interval_s"] == 10
    for kwargs, path in (
        ({"ref": "modbus:ghost", "interval": "1"}, "device.ref"),
        ({"ref": "modbus:incomer", "interval": "0"}, "device.interval_s"),
        ({"ref": "modbus:incomer"}, "device.interval_s"),
        ({"ref": "opcua:line1:press", "enabled": "on"}, "device.enabled"),
        ({"ref": "modbus:incomer", "enabled": "maybe"}, "device.enabled"),
    ):
        with pytest.raises(EditRefused) as err:
            change_device(CONFIG, **kwargs)
        assert [p.path for p in err.value.problems] == [path], kwargs


def test_shown_config_hides_passwords_and_url_credentials_and_restores_the_urls() -> None:
    shown = shown_config(CONFIG)
    text = fleet.to_yaml(shown)
    assert "Opc-Secret-1" not in text and "Url-Secret-2" not in text
    assert (
        shown["opcua"][0]["password"] == fleet.MASK
        and shown["mqtt"][0]["url"] == "mqtt://u:***@10.0.0.7:1883"
    )
    assert shown["opcua"][0]["url"] == "opc.tcp://10.0.0.9:4840"  # nothing to hide: unchanged
    back = restore_urls(copy.deepcopy(shown), CONFIG)
    assert back["mqtt"][0]["url"] == CONFIG["mqtt"][0]["url"]
    assert back["opcua"][0]["password"] == fleet.MASK  # left for fleet.set_desired to restore
    edited = copy.deepcopy(shown)
    edited["mqtt"][0]["url"] = "mqtt://u:New-Secret@10.0.0.8:1883"
    assert restore_urls(edited, CONFIG)["mqtt"][0]["url"] == "mqtt://u:New-Secret@10.0.0.8:1883"
    moved = copy.deepcopy(shown)
    moved["mqtt"].insert(0, {"name": "a", "url": "mqtt://10.0.0.1:1883", "topics": []})
    assert restore_urls(moved, CONFIG)["mqtt"][1]["url"] == CONFIG["mqtt"][0]["url"]  # matched by name
