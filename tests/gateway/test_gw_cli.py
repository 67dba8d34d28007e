"""`validate` names every error with its path and value; `check` prints a table and fails on a dead device."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from test_gw_helpers import sim_factory  # noqa: F401  (fixture)
from typer.testing import CliRunner

from gateway.cli import app

runner = CliRunner()


def _write(tmp: Path, doc: dict[str, Any]) -> Path:
    p = tmp / "gw.yaml"
    p.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return p


BASE: dict[str, Any] = {
    "gateway": {"park": "p1", "firm": "f1", "id": "gw1"},
    "uplink": {"url": "mqtt://127.0.0.1:1883"},
    "spool": {"path": "spool.db"},
}


def test_validate_reports_every_error_with_path_and_value(tmp_path: Path) -> None:
    doc = {
        **BASE,
        "gateway": {"park": "Bad Park", "firm": "f1", "id": "gw1"},
        "uplink": {"url": "http://broker", "keepalive_s": 1},
        "buses": [
            {"name": "rs485", "type": "rtu", "port": "/dev/ttyUSB0", "parity": "X"},
            {"name": "lan", "type": "tcp", "host": "10.0.0.2"},
        ],
        "devices": [
            {"id": "m1", "bus": "lan", "device_id": 1, "profile": "eastron-sdm630"},
            {"id": "m2", "bus": "lan", "device_id": 2, "profile": "sdm-630"},
            {"id": "m3", "bus": "lan", "device_id": 3, "profile": "eastron-sdm630", "interval_s": -5},
        ],
        "unknown_key": 1,
    }
    res = runner.invoke(app, ["validate", "-c", str(_write(tmp_path, doc))])
    assert res.exit_code == 2
    out = res.output
    for path, value in [
        ("gateway.park", "Bad Park"),
        ("uplink.url", "http://broker"),
        ("uplink.keepalive_s", "1"),
        ("buses[0].parity", "X"),
        ("unknown_key", "1"),
        ("devices[1].profile", "sdm-630"),  # a cross-check, reported together with the structural errors
        ("devices[2].interval_s", "-5"),
    ]:
        assert path in out, path
        assert value in out, value


def test_validate_cross_checks_profile_bus_and_overlaps(tmp_path: Path) -> None:
    doc = {
        **BASE,
        "buses": [{"name": "lan", "type": "tcp", "host": "10.0.0.2"}],
        "devices": [
            {"id": "m1", "bus": "lan", "device_id": 1, "profile": "no-such-meter"},
            {"id": "m2", "bus": "nowhere", "device_id": 2, "profile": "eastron-sdm630"},
            {
                "id": "m3",
                "bus": "lan",
                "device_id": 3,
                "profile": "chint-dtsu666",
                "registers": [{"metric": "temperature_c", "address": 0x2007, "unit": "degC"}],
            },
            {"id": "m3", "bus": "lan", "device_id": 3, "profile": "eastron-sdm630"},
        ],
    }
    res = runner.invoke(app, ["validate", "-c", str(_write(tmp_path, doc))])
    assert res.exit_code == 2
    out = res.output
    assert "devices[0].profile" in out and "no-such-meter" in out
    assert "devices[1].bus" in out and "nowhere" in out
    assert "devices[2].registers[0].address" in out and "overlaps" in out
    assert "devices[3].id" in out and "duplicate" in out
    assert "devices[3].device_id" in out


def test_validate_accepts_a_good_file(tmp_path: Path) -> None:
    doc = {
        **BASE,
        "buses": [{"name": "rs485", "type": "rtu", "port": "/dev/ttyUSB0", "baudrate": 9600, "parity": "E"}],
        "devices": [
            {"id": "m1", "bus": "rs485", "device_id": 1, "profile": "acrel-adl400", "scale": {"ct_ratio": 40}}
        ],
    }
    res = runner.invoke(app, ["validate", "-c", str(_write(tmp_path, doc))])
    assert res.exit_code == 0, res.output
    assert "ok" in res.output


def test_example_config_validates() -> None:
    root = Path(__file__).resolve().parents[2]
    res = runner.invoke(app, ["validate", "-c", str(root / "deploy/gateway/example.yaml")])
    assert res.exit_code == 0, res.output


def test_check_prints_table_and_fails_on_dead_device(sim_factory: Any, tmp_path: Path) -> None:  # noqa: F811
    sim = sim_factory()
    sim.add_device(device_id=1, model="eastron-sdm630", seed=1)
    dead = sim.add_device(device_id=2, model="chint-dtsu666", seed=2)
    sim.start()
    doc = {
        **BASE,
        "buses": [{"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": sim.port, "timeout_s": 0.5}],
        "devices": [
            {"id": "good-meter", "bus": "lan", "device_id": 1, "profile": "eastron-sdm630"},
            {"id": "dead-meter", "bus": "lan", "device_id": 2, "profile": "chint-dtsu666"},
        ],
    }
    cfg = _write(tmp_path, doc)
    res = runner.invoke(app, ["check", "-c", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "good-meter" in res.output and "elec_import_kwh" in res.output and "kWh" in res.output
    dead.inject("timeout")
    res = runner.invoke(app, ["check", "-c", str(cfg)])
    assert res.exit_code == 1
    assert "dead-meter" in res.output and "transport" in res.output
    assert "voltage_l1_v" in res.output  # the good meter is still read and shown
    dead.inject("exception")
    res = runner.invoke(app, ["check", "-c", str(cfg)])
    assert res.exit_code == 1
    assert "exception" in res.output


def test_profiles_list_and_show() -> None:
    res = runner.invoke(app, ["profiles", "list"])
    assert res.exit_code == 0
    for name in (
        "eastron-sdm630",
        "acrel-adl400",
        "chint-dtsu666",
        "schneider-iem3255",
        "cems-analyser",
        "generic-meter",
    ):
        assert name in res.output
    res = runner.invoke(app, ["profiles", "show", "schneider-iem3255"])
    assert res.exit_code == 0
    assert "DOCA0005EN" in res.output and "0x0C83" in res.output  # register 3204 is wire address 3203
    res = runner.invoke(app, ["profiles", "show", "nope"])
    assert res.exit_code == 2


def test_extra_device_registers_are_checked_against_the_catalogue(tmp_path: Path) -> None:
    # registers a device adds to its profile meet the same catalogue check as the profile's own
    from test_gw_helpers import make_config

    from parkpulse.errors import ValidationReport

    extra = [
        {"metric": "no_such_metric", "address": 500, "unit": "V"},
        {"metric": "temperature_c", "address": 502, "unit": "K"},
        {"metric": "humidity_pct", "address": 504, "unit": "%"},
    ]
    with pytest.raises(ValidationReport) as exc:
        make_config(
            park="p",
            broker_url="mqtt://127.0.0.1:1883",
            spool=tmp_path / "s.db",
            buses=[{"id": "lan", "type": "tcp", "host": "127.0.0.1", "port": 502}],
            devices=[
                {"id": "m1", "bus": "lan", "device_id": 1, "profile": "generic-meter", "registers": extra}
            ],
        )
    paths = {p.path for p in exc.value.problems}
    assert "devices[0].registers[0].metric" in paths
    assert "devices[0].registers[1].unit" in paths
    assert not any(p.startswith("devices[0].registers[2]") for p in paths)
