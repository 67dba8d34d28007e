"""The OPC UA line simulator: address space and values, restart on the same port, security and users, the CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.uaerrors import UaError

from simulators.errors import SimulatorError
from simulators.opcua_line import STATE_CODES, OpcuaLine

ROOT = Path(__file__).resolve().parents[2]


async def _read(url: str, node_ids: list[str]) -> list[object]:
    async with Client(url, timeout=3) as c:
        return [await c.get_node(n).read_value() for n in node_ids]


def test_values_follow_the_truth_and_restart_on_the_same_port() -> None:
    with OpcuaLine("l1", ("a", "b"), port=0, update_s=0.1, time_scale=600) as line:
        port = line.port
        line.set_state("a", 3)
        time.sleep(0.4)
        state, good = asyncio.run(
            _read(line.url, [line.node_id("a", "State"), line.node_id("b", "GoodCount")])
        )
        assert state == STATE_CODES[3] == 130, "the machine's own state code"
        assert isinstance(good, int) and 0 < good <= line.truth()["b"]["good_count"]
        line.stop()
        with pytest.raises((OSError, TimeoutError, ConnectionError, UaError)):
            asyncio.run(_read(line.url, [line.node_id("a", "State")]))
        line.start()
        assert line.port == port and line.starts == 2
        (energy,) = asyncio.run(_read(line.url, [line.node_id("b", "EnergyKWh")]))
        assert isinstance(energy, float) and energy > 0


def test_basic256sha256_only_and_users_refuse_anonymous(tmp_path: Path) -> None:
    with OpcuaLine(
        "l1", ("a",), port=0, security="basic256sha256", users={"u": "p"}, cert_dir=tmp_path
    ) as line:
        assert line.server_certificate.is_file()

        async def endpoints() -> list[ua.EndpointDescription]:
            c = Client(line.url, timeout=3)
            return await c.connect_and_get_server_endpoints()

        eps = asyncio.run(endpoints())
        assert {e.SecurityPolicyUri.rsplit("#", 1)[-1] for e in eps} == {"Basic256Sha256"}
        assert {e.SecurityMode for e in eps} == {
            ua.MessageSecurityMode.Sign,
            ua.MessageSecurityMode.SignAndEncrypt,
        }
        assert all(t.TokenType == ua.UserTokenType.UserName for e in eps for t in e.UserIdentityTokens)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(SimulatorError, match="machines must be distinct"):
        OpcuaLine("l1", ("a", "a"))
    with pytest.raises(SimulatorError, match="state must be one of"):
        OpcuaLine("l1", ("a",), port=0).set_state("a", 9)


def test_cli_serves_and_stops(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PP_SIM_PW": "pw"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulators.cli",
            "opcua",
            "--port",
            "0",
            "--security",
            "basic256sha256",
            "--user",
            "gw",
            "--password-env",
            "PP_SIM_PW",
            "--cert-dir",
            str(tmp_path),
            "--duration",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "OPC UA line line1 on opc.tcp://127.0.0.1:" in out.stdout and "pw" not in out.stdout.replace(
        "pp", ""
    )
    assert (tmp_path / "gateway-cert.der").is_file() and (tmp_path / "server-cert.der").is_file()
