"""The demo's managed gateway (issue 14): one gateway configured from the platform, and a spare
meter an operator adds to it from the console, with nobody touching the gateway's host.

The scenario marks the spare meter `enabled: false` (installed on the bus, simulated, not in the
generated gateway file). The demo makes the fleet key pair, turns the spare's gateway into a
managed one (`managed: {verify_key, state_dir}` in its file), stores its generated devices as
desired version 1 (`parkpulse gateways config set`) and creates an operator of that firm. The
add-meter step itself is the console's HTTP form, driven by a real HTTP client as that operator:
log in, read the CSRF token and base version from the edit page, post the form with a reason.
The operator's password is printed once, to the person running the demo, and written nowhere.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml

from parkpulse.wire import LOCAL_ONLY_KEYS

__all__ = [
    "ConsoleStepFailed",
    "FleetPlan",
    "SpareMeter",
    "add_meter_through_console",
    "bus_of",
    "find_spare",
    "managed_part",
    "wait_applied",
    "wait_readings",
]

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_BASE_VERSION = re.compile(r'name="base_version" value="(\d*)"')


class ConsoleStepFailed(Exception):
    """The console refused or did not answer a step of the operator's add-meter flow."""


@dataclass(frozen=True)
class SpareMeter:
    """A meter of the scenario that is installed (simulated) but not in its gateway's file."""

    gateway: str
    firm: str
    device: str
    profile: str
    unit: int
    host: str
    port: int
    interval_s: float


@dataclass(frozen=True)
class FleetPlan:
    """What the demo's fleet stage set up: the managed gateway, its spare meter, the operator."""

    spare: SpareMeter
    bus: str
    operator: str
    verify_key: Path
    state_dir: Path

    def managed_section(self) -> dict[str, Any]:
        """The `managed:` key of the gateway's file."""
        return {"enabled": True, "verify_key": str(self.verify_key), "state_dir": str(self.state_dir)}


def find_spare(scenario: Path, manifest: Path) -> SpareMeter | None:
    """The scenario's first disabled Modbus TCP meter with its simulated address, or None."""
    doc = yaml.safe_load(scenario.read_text(encoding="utf-8"))
    entries = {
        (e.get("gateway"), e.get("device")): e
        for e in json.loads(manifest.read_text(encoding="utf-8")).get("devices", [])
    }
    for firm in doc.get("firms") or []:
        for gw in firm.get("gateways") or []:
            for dev in gw.get("devices") or []:
                e = entries.get((gw["id"], dev["id"]))
                if dev.get("enabled", True) is not False or e is None or e.get("transport") != "tcp":
                    continue
                return SpareMeter(
                    gateway=str(gw["id"]),
                    firm=str(firm["id"]),
                    device=str(dev["id"]),
                    profile=str(dev.get("profile") or e.get("model")),
                    unit=int(e["device_id"]),
                    host=str(e["host"]),
                    port=int(e["port"]),
                    interval_s=float(dev.get("poll_interval_s") or 5),
                )
    return None


def bus_of(gateway_file: Path, host: str, port: int) -> str:
    """The name of the generated file's Modbus TCP bus at host:port (where the spare meter is)."""
    doc = yaml.safe_load(gateway_file.read_text(encoding="utf-8"))
    for bus in doc.get("buses") or []:
        if bus.get("type") == "tcp" and bus.get("host") == host and int(bus.get("port", 502)) == port:
            return str(bus["name"])
    raise ValueError(
        f"{gateway_file.name}: buses: no Modbus TCP bus at {host}:{port} (got {doc.get('buses')!r})"
    )


def managed_part(gateway_file: Path) -> str:
    """YAML of the keys of a gateway file the platform manages (everything but the local-only keys)."""
    doc = yaml.safe_load(gateway_file.read_text(encoding="utf-8"))
    part = {k: v for k, v in doc.items() if k not in LOCAL_ONLY_KEYS}
    return yaml.safe_dump(part, allow_unicode=True, sort_keys=False)


def _login(client: httpx.Client, user: str, password: str) -> None:
    page = client.get("/login")
    m = _CSRF.search(page.text)
    if page.status_code != 200 or m is None:
        raise ConsoleStepFailed(f"GET /login: status {page.status_code}, no login form")
    resp = client.post("/login", data={"user": user, "password": password, "csrf": m[1], "next": "/fleet"})
    if resp.status_code != 303:
        raise ConsoleStepFailed(f"POST /login as {user}: status {resp.status_code} (expected 303)")


def add_meter_through_console(base_url: str, user: str, password: str, plan: FleetPlan, reason: str) -> str:
    """Log in as `user`, open the gateway's edit page and post its add-meter form; the page it lands on."""
    spare = plan.spare
    with httpx.Client(base_url=base_url, timeout=20.0, headers={"Origin": base_url}) as client:
        _login(client, user, password)
        edit = client.get(f"/fleet/{spare.gateway}/edit")
        if edit.status_code != 200:
            raise ConsoleStepFailed(f"GET /fleet/{spare.gateway}/edit: status {edit.status_code}")
        csrf, base = _CSRF.search(edit.text), _BASE_VERSION.search(edit.text)
        if csrf is None or base is None:
            raise ConsoleStepFailed(f"/fleet/{spare.gateway}/edit: no add-meter form with a CSRF token")
        bus_ref, profile_ref = f"modbus:{plan.bus}", f"modbus:{spare.profile}"
        for what, ref in (("bus", bus_ref), ("profile", profile_ref)):
            if f'value="{ref}"' not in edit.text:
                raise ConsoleStepFailed(f"/fleet/{spare.gateway}/edit: the form offers no {what} {ref!r}")
        form = {
            "meter_id": spare.device,
            "bus": bus_ref,
            "unit": str(spare.unit),
            "profile": profile_ref,
            "interval_s": f"{spare.interval_s:g}",
            "csrf": csrf[1],
            "reason": reason,
            "base_version": base[1],
        }
        resp = client.post(f"/fleet/{spare.gateway}/meter", data=form)
        if resp.status_code != 303:
            problems = re.findall(r"<li[^>]*>(.*?)</li>", resp.text, re.S)[:5]
            raise ConsoleStepFailed(
                f"POST /fleet/{spare.gateway}/meter: status {resp.status_code}: {' | '.join(problems)}"
            )
        return str(resp.headers.get("location", ""))


def _row(dsn: str, sql: str, *params: object) -> tuple[Any, ...] | None:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchone()


def wait_applied(dsn: str, gateway: str, version: int, timeout: float) -> dict[str, Any] | None:
    """Until the gateway reports `version` applied with no drift (v_gateway_fleet); its row, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = _row(
            dsn,
            "SELECT desired_version, applied_version, drift, config_state, published_version "
            "FROM v_gateway_fleet WHERE gateway_id = %s",
            gateway,
        )
        if row is not None and row[1] == version and row[0] == version and row[2] is False:
            keys = ("desired_version", "applied_version", "drift", "config_state", "published_version")
            return dict(zip(keys, row, strict=True))
        time.sleep(0.5)
    return None


def wait_readings(dsn: str, gateway: str, device: str, timeout: float) -> int:
    """Until the device has readings in v_readings (or `timeout`); how many it has."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        row = _row(
            dsn, "SELECT count(*) FROM v_readings WHERE gateway_id = %s AND device_id = %s", gateway, device
        )
        n = int(row[0]) if row else 0
        if n:
            return n
        time.sleep(0.5)
    return n
