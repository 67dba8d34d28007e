"""The gateway installs alone, offline (issue 14): the bundle of `gateway.bundle` installed into a fresh
virtualenv with `pip install --no-index`, then `validate`, `check` and `run` against a Modbus simulator.

The bundle is built once per session from this checkout (pip may use the machine's index or cache for
that: it is the "machine with internet" side). The install side is offline: pip gets no index and no
configuration, and every proxy variable points at a closed port, so any download attempt fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_gw_helpers import collector

from gateway.bundle import Bundle, BundleError, build_bundle

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MAIN_BIN = Path(sys.executable).parent
PLATFORM_MODULES = ("psycopg", "psycopg_pool", "fastapi", "uvicorn", "jinja2", "openpyxl", "matplotlib")
PLATFORM_WHEELS = ("psycopg", "fastapi", "uvicorn", "jinja2", "openpyxl", "matplotlib", "grafana")
# The kernel's store modules (PostgreSQL) are platform parts: everything else must import on a slim install.
STORE_MODULES = ("parkpulse.db", "parkpulse.synthetic", "parkpulse.patroni_local", "parkpulse.reconnect")


def offline_env() -> dict[str, str]:
    """The environment of every command run in the slim venv: no pip configuration, no index, no
    route out (a closed proxy port), and nothing of this checkout on the import path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    dead = "http://127.0.0.1:9"
    env.update(
        PIP_CONFIG_FILE=os.devnull, http_proxy=dead, https_proxy=dead, HTTP_PROXY=dead, HTTPS_PROXY=dead
    )
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != str(MAIN_BIN))
    return env


@dataclass(frozen=True)
class SlimInstall:
    bundle: Bundle
    unpacked: Path  # the bundle's folder after `tar xzf`
    venv: Path

    def run(self, *args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        exe = self.venv / "bin" / args[0]
        return subprocess.run(
            [str(exe), *args[1:]], capture_output=True, text=True, env=offline_env(), cwd=cwd, timeout=timeout
        )


@pytest.fixture(scope="session")
def gateway_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """Built once per session (about 15 s from the pip cache or a mirror)."""
    return build_bundle(tmp_path_factory.mktemp("bundle-dist"), python=sys.executable)


def _unpack(bundle: Bundle, into: Path) -> Path:
    listed = bundle.checksum_file.read_text(encoding="utf-8").split()
    assert listed == [hashlib.sha256(bundle.archive.read_bytes()).hexdigest(), bundle.archive.name]
    with tarfile.open(bundle.archive) as tar:
        tar.extractall(into, filter="data")
    (folder,) = into.iterdir()
    return folder


@pytest.fixture(scope="session")
def slim(gateway_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> SlimInstall:
    """A fresh virtualenv with only the gateway, installed from the bundle by its own install.sh."""
    base = tmp_path_factory.mktemp("slim")
    unpacked = _unpack(gateway_bundle, base / "unpacked")
    venv = base / "venv"
    proc = subprocess.run(
        [str(unpacked / "install.sh"), str(venv)],
        capture_output=True,
        text=True,
        env={**offline_env(), "PYTHON": sys.executable},
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"installed parkpulse {gateway_bundle.version}" in proc.stdout
    return SlimInstall(gateway_bundle, unpacked, venv)


@pytest.fixture
def modbus_sim() -> Iterator[int]:
    """Two simulated SDM630 meters on one Modbus TCP port, served by `parkpulse-sim` of the main venv."""
    proc = subprocess.Popen(
        [
            str(MAIN_BIN / "parkpulse-sim"),
            "meter",
            "--model",
            "eastron-sdm630",
            "--port",
            "0",
            "--count",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r" on 127\.0\.0\.1:(\d+) ", line)
        assert m, f"simulator did not start: {line!r}"
        yield int(m.group(1))
    finally:
        proc.terminate()
        proc.wait(10)


def test_bundle_holds_the_gateway_wheels_and_no_platform_package(gateway_bundle: Bundle) -> None:
    wheels = gateway_bundle.wheels
    assert f"parkpulse-{gateway_bundle.version}-py3-none-any.whl" in wheels
    for needed in ("pydantic", "pymodbus", "paho_mqtt", "aiomqtt", "asyncua", "cryptography", "orjson"):
        assert any(w.startswith(needed + "-") for w in wheels), needed
    for platform in PLATFORM_WHEELS:
        assert not [w for w in wheels if w.lower().startswith(platform)], platform
    assert gateway_bundle.python_tag == f"cp{sys.version_info[0]}{sys.version_info[1]}"


def test_slim_install_imports_the_whole_gateway_without_platform_packages(
    slim: SlimInstall, tmp_path: Path
) -> None:
    probe = f"""
import importlib, importlib.util, json, pkgutil, sys
import gateway, parkpulse
absent = [m for m in {PLATFORM_MODULES!r} if importlib.util.find_spec(m) is not None]
failed, count = [], 0
for pkg in (gateway, parkpulse):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if info.name.endswith("__main__") or info.name.startswith({STORE_MODULES!r}):
            continue
        count += 1
        try:
            importlib.import_module(info.name)
        except ImportError as exc:
            failed.append([info.name, exc.name])
loaded = [m for m in {PLATFORM_MODULES!r} if m in sys.modules]
print(json.dumps({{"installed": absent, "failed": failed, "loaded": loaded, "count": count,
                  "gateway": gateway.__file__}}))
"""
    proc = slim.run("python", "-c", probe, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["installed"] == [], "platform packages in the slim venv"
    assert doc["failed"] == [], "gateway or kernel modules that need a platform package"
    assert doc["loaded"] == []
    assert doc["count"] > 40  # every gateway module and the kernel's, not an empty walk
    assert Path(doc["gateway"]).is_relative_to(slim.venv), "the code ran from the checkout, not the install"


def _gateway_yaml(
    tmp: Path, park: str, broker_url: str, sim_port: int, profile: str = "eastron-sdm630"
) -> Path:
    doc: dict[str, Any] = {
        "gateway": {"park": park, "firm": "f1", "id": "gw1"},
        "uplink": {"url": broker_url, "reconnect_min_s": 1, "reconnect_max_s": 2},
        "spool": {"path": "spool.db"},
        "batching": {"max_readings": 500, "max_age_s": 0.5},
        "http": {"listen": "127.0.0.1:0"},
        "buses": [{"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": sim_port, "timeout_s": 1.0}],
        "devices": [
            {"id": "meter-1", "bus": "lan", "device_id": 1, "profile": profile, "interval_s": 0.5},
            {"id": "meter-2", "bus": "lan", "device_id": 2, "profile": "eastron-sdm630", "interval_s": 0.5},
        ],
    }
    path = tmp / "gw.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_validate_check_and_run_from_the_slim_install(
    slim: SlimInstall, modbus_sim: int, broker: Any, unique_id: str, tmp_path: Path
) -> None:
    bad = _gateway_yaml(tmp_path, unique_id, broker.url, modbus_sim, profile="sdm-630")
    res = slim.run("parkpulse-gateway", "validate", "-c", str(bad), cwd=tmp_path)
    assert res.returncode == 2 and "devices[0].profile" in res.stderr and "sdm-630" in res.stderr, res.stderr

    cfg = _gateway_yaml(tmp_path, unique_id, broker.url, modbus_sim)
    res = slim.run("parkpulse-gateway", "validate", "-c", str(cfg), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"ok — gateway {unique_id}/f1/gw1" in res.stdout

    res = slim.run("parkpulse-gateway", "check", "-c", str(cfg), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "meter-1" in res.stdout and "meter-2" in res.stdout and "elec_import_kwh" in res.stdout

    with collector(broker.port, unique_id) as col:
        proc = subprocess.Popen(
            [str(slim.venv / "bin" / "parkpulse-gateway"), "run", "-c", str(cfg)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=offline_env(),
            cwd=tmp_path,
        )
        try:
            arrived = col.wait(lambda c: {"meter-1", "meter-2"} <= {r[0] for r in c.readings()}, 30)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        assert arrived, out.decode(errors="replace")[-3000:]
        assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
        metrics = {r[1] for r in col.readings()}
        assert "elec_import_kwh" in metrics
    assert (tmp_path / "spool.db").is_file()


def test_platform_commands_name_the_missing_extra(slim: SlimInstall, tmp_path: Path) -> None:
    for args, command in (
        (("ingest", "run"), "parkpulse ingest"),  # a service whose package cannot even be imported
        (("db", "migrate"), "parkpulse db migrate"),  # a kernel command that needs the store driver
        (("console", "serve"), "parkpulse console serve"),  # imports fine, fails when it runs
    ):
        res = slim.run("parkpulse", *args, cwd=tmp_path)
        err = " ".join(res.stderr.split())
        assert res.returncode == 1, (args, res.stdout, res.stderr)
        assert f"`{command}` needs the 'platform' extra" in err, err
        assert "pip install 'parkpulse[platform]'" in err, err
        assert "Traceback" not in res.stderr
    listing = slim.run("parkpulse", "--help", cwd=tmp_path)
    assert "needs pip install 'parkpulse[platform]'" in listing.stdout


def test_install_refuses_a_damaged_bundle_and_installs_nothing(slim: SlimInstall, tmp_path: Path) -> None:
    copy = tmp_path / slim.unpacked.name
    shutil.copytree(slim.unpacked, copy)
    victim = next(p for p in sorted((copy / "wheels").iterdir()) if p.name.startswith("pydantic_core"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    target = tmp_path / "venv"
    res = subprocess.run(
        [str(copy / "install.sh"), str(target)],
        capture_output=True,
        text=True,
        env={**offline_env(), "PYTHON": sys.executable},
        timeout=60,
    )
    assert res.returncode == 1
    assert "damaged" in res.stderr and victim.name in res.stderr and "nothing installed" in res.stderr
    assert not target.exists()


def test_bundle_build_names_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"--python: cannot run '/nonexistent/python3'"):
        build_bundle(tmp_path / "out", python="/nonexistent/python3")
    (tmp_path / "tree").mkdir()
    with pytest.raises(BundleError, match=r"install-bundle\.sh: the install script is missing"):
        build_bundle(tmp_path / "out", root=tmp_path / "tree")
    assert not (tmp_path / "out").exists(), "nothing written before the checks pass"
