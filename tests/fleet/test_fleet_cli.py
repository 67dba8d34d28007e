"""`parkpulse gateways config …` and `gateways profiles …` through typer's CliRunner on a real database."""

from __future__ import annotations

from pathlib import Path

import yaml
from platform_testkit import PARK_PROFILE, Registry, config
from typer.testing import CliRunner

import fleet
from fleet.cli import gateways_app

runner = CliRunner()


def _run(registry: Registry, *args: str) -> tuple[int, str]:
    res = runner.invoke(gateways_app, [*args, "--database-url", registry.dsn])
    return res.exit_code, res.output


def test_config_set_get_history_diff_rollback(registry: Registry, tmp_path: Path) -> None:
    f1, f2 = tmp_path / "v1.yaml", tmp_path / "v2.yaml"
    cfg = config(
        mqtt=[
            {
                "name": "plc",
                "url": "mqtt://10.0.0.5:1883",
                "username": "plc",
                "password": "pw-9f8e",
                "topics": [{"topic": "plc/1", "device": "line-1", "fields": {"state": "machine_state"}}],
            }
        ]
    )
    f1.write_text(fleet.to_yaml(cfg))
    code, out = _run(registry, "config", "set", registry.gw, str(f1), "--reason", "first", "--by", "li.wei")
    assert code == 0, out
    assert "version 1 stored" in out
    code, out = _run(registry, "config", "get", registry.gw)
    assert code == 0 and "pw-9f8e" not in out and "password: '***'" in out
    assert out.startswith(f"# {registry.gw} version 1 by li.wei")
    # edit what `get` printed (secret masked) and set it again: the password is kept
    shown = yaml.safe_load(out)
    shown["devices"][0]["interval_s"] = 30
    f2.write_text(fleet.to_yaml(shown))
    code, out = _run(registry, "config", "set", registry.gw, str(f2), "-m", "slower")
    assert code == 0, out
    with registry.conn() as conn:
        v2 = fleet.desired(conn, registry.gw)
    assert v2 is not None and v2.config["mqtt"][0]["password"] == "pw-9f8e" and v2.created_by.endswith("@cli")
    code, out = _run(registry, "config", "diff", registry.gw)
    assert code == 0 and "-  interval_s: 5" in out and "+  interval_s: 30" in out and "pw-9f8e" not in out
    code, out = _run(registry, "config", "rollback", registry.gw, "1", "-m", "too slow")
    assert code == 0 and "version 3 stored, equal to version 1" in out
    code, out = _run(registry, "config", "history", registry.gw)
    assert code == 0 and "too slow" in out and "slower" in out and "first" in out
    code, out = _run(registry, "config", "diff", registry.gw, "1", "3")
    assert code == 0 and "(no difference)" in out


def test_config_set_refuses_an_invalid_file_listing_every_problem(registry: Registry, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        fleet.to_yaml(config({"id": "pump", "profile": "nope"}, uplink={"url": "mqtt://x"}, log_level="LOUD"))
    )
    code, out = _run(registry, "config", "set", registry.gw, str(bad), "-m", "x")
    assert (
        code == 1
        and "uplink: a local-only key" in out
        and "devices[1].profile" in out
        and "3 problem(s)" in out
    )
    bad.write_text(fleet.to_yaml(config({"id": "pump", "profile": "nope"}, log_level="LOUD")))
    code, out = _run(registry, "config", "set", registry.gw, str(bad), "-m", "x", "--dry-run")
    assert code == 1 and "devices[1].profile" in out and "log_level" in out and "2 problem(s)" in out
    bad.write_text("devices: [unclosed\n")
    code, out = _run(registry, "config", "set", registry.gw, str(bad), "-m", "x")
    assert code == 1 and "not YAML at line" in out
    code, out = _run(registry, "config", "get", "no-such-gw")
    assert code == 2 and "no gateway 'no-such-gw'" in out
    code, out = _run(registry, "config", "get", registry.gw)
    assert code == 3 and "local file" in out
    with registry.conn() as conn:
        assert fleet.history(conn, registry.gw) == []


def test_profiles_put_list_show(registry: Registry, tmp_path: Path) -> None:
    f = tmp_path / "acme.yaml"
    f.write_text(yaml.safe_dump(PARK_PROFILE))
    code, out = _run(registry, "profiles", "put", "modbus", str(f), "-m", "ACME pumps")
    assert code == 0 and "acme-pump-meter: version 1 stored" in out, out
    code, out = _run(registry, "profiles", "list", "--source", "modbus")
    assert code == 0 and "acme-pump-meter" in out and "eastron-sdm630" in out and "dlt645-2007" not in out
    code, out = _run(registry, "profiles", "show", "modbus", "acme-pump-meter")
    assert code == 0 and "model: PM-1" in out
    broken = {**PARK_PROFILE, "registers": [{"metric": "no_such", "address": 0, "unit": "kW"}]}
    f.write_text(yaml.safe_dump(broken))
    code, out = _run(registry, "profiles", "put", "modbus", str(f), "-m", "x")
    assert code == 1 and "registers[0].metric" in out
    code, out = _run(registry, "profiles", "show", "dlt645", "nope")
    assert code == 2 and "no dlt645 profile 'nope'" in out
