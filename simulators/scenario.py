"""Scenario files: the registry park file plus, per device, `model:` and optional `sim:` keys.

The simulators read only what they need and check it themselves (they import nothing of the
project); the registry validation of the rest is parkpulse's (the gateway team's generator
strips `model`/`sim` and loads the result as a ParkFile).

Device `sim:` keys understood here:
  transport: tcp | rtu            (Modbus models; default tcp; line sensors are always mqtt)
  unit_id: 1..247                 (Modbus device id; default: next free id on the gateway's server)
  seed: int                       (default: a stable hash of gateway/device)
  faults: [{at_s: 60, fault: counter_reset}, {at_s: 90, fault: timeout, for_s: 20}, ...]
  line_id, interval_s, ideal_rate, reject_ratio, time_scale   (line sensors)
  anything else is passed to the simulated process (timeout_ratio, tick_s, shifts, nox_limit_mg_m3 …)
DL/T 645 meters (models in DLT645_MODELS, kind meter): address (12 digits; default the device's
  position on the gateway's bus, 000000000001 …), import_kwh, time_scale, seed, faults
  (silence | abnormal | bad_checksum, with for_s). HJ 212 stacks (models in HJ212_MODELS, kind
  cems): mn (default from the seed), password, backfill_hours (0..24: minutes sent first, from
  the start of the clock hour that many hours back), and the CEMS process keys (nox_limit_mg_m3,
  exceed_*, calibration_*, maintenance …; their times count from the first backfilled minute).
  OPC UA machines (model opcua-line, kind line): ideal_rate, reject_ratio, rated_kw, time_scale.
Gateway `sim:` keys: uplink_outage: {after_s, for_s} (copied to the manifest for whoever drives
the gateway's uplink), rtu: {baudrate, parity, stopbits} (the RTU bus of that gateway),
dlt645: {transport: tcp | pty, baudrate, parity} (its DL/T 645 bus), opcua: {line_id} (its OPC UA
server: one line, one machine per opcua-line device).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import yaml

from simulators._scenario_protocols import (
    GATEWAY_PROTOCOL_KEYS,
    check_gateway_protocols,
    parse_dlt645_meter,
    parse_hj212_stack,
    parse_opcua_machine,
)
from simulators.device import FAULTS, check_params
from simulators.errors import ScenarioError
from simulators.modbus import MODELS

__all__ = [
    "DLT645_MODELS",
    "HJ212_MODELS",
    "LINE_MODEL",
    "OPCUA_MODEL",
    "DeviceSpec",
    "GatewaySpec",
    "Scenario",
    "load_scenario",
    "parse_scenario",
]

LINE_MODEL = "line-sensor"
OPCUA_MODEL = "opcua-line"
# model (= the gateway's DL/T 645 profile name) -> the edition the simulated meter speaks
DLT645_MODELS = {"dlt645-2007-generic": "2007", "chint-dtsu666-dlt645": "2007", "dlt645-1997-generic": "1997"}
# model (= the registry profile, which tells the alert engine the logger's edition) -> HJ 212 edition
HJ212_MODELS = {"hj212-2017": "2017", "hj212-2025": "2025"}
ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_KIND_OF_MODEL = (
    {m: ("cems" if m == "cems-analyser" else "meter") for m in MODELS}
    | {LINE_MODEL: "line", OPCUA_MODEL: "line"}
    | dict.fromkeys(DLT645_MODELS, "meter")
    | dict.fromkeys(HJ212_MODELS, "cems")
)
_LINE_KEYS = {"line_id", "interval_s", "ideal_rate", "reject_ratio", "time_scale", "seed", "faults"}


@dataclass
class DeviceSpec:
    gateway: str
    firm: str
    id: str
    kind: str
    model: str
    transport: str
    unit_id: int | None
    seed: int
    params: dict[str, Any]
    faults: list[dict[str, Any]]
    registry: dict[str, Any]

    @property
    def line_id(self) -> str:
        return str(self.params.get("line_id") or f"{self.firm}-{self.id}")


@dataclass
class GatewaySpec:
    id: str
    firm: str
    sim: dict[str, Any]
    devices: list[DeviceSpec] = field(default_factory=list)


@dataclass
class Scenario:
    source: str
    park_id: str
    raw: dict[str, Any]
    gateways: list[GatewaySpec]

    def devices(self) -> list[DeviceSpec]:
        return [d for g in self.gateways for d in g.devices]

    def registry_dict(self) -> dict[str, Any]:
        """The park file with the simulator-only keys (`model`, `sim`) stripped."""

        def strip(node: Any) -> Any:
            if isinstance(node, dict):
                return {k: strip(v) for k, v in node.items() if k not in ("model", "sim")}
            if isinstance(node, list):
                return [strip(v) for v in node]
            return node

        stripped: dict[str, Any] = strip(self.raw)
        return stripped


def _non_negative(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _seed(*parts: str) -> int:
    return zlib.crc32("/".join(parts).encode())


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(str(p), [("(file)", str(p), f"cannot read: {exc.strerror}")]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(str(p), [("(file)", str(p), f"not YAML: {exc}")]) from None
    return parse_scenario(raw, str(p))


def _check_faults(
    faults: Any, at: str, allowed: tuple[str | None, ...], problems: list[tuple[str, object, str]]
) -> list[dict[str, Any]]:
    if faults is None:
        return []
    if not isinstance(faults, list):
        problems.append((at, faults, "must be a list of {at_s, fault, for_s?}"))
        return []
    out = []
    for i, f in enumerate(faults):
        where = f"{at}[{i}]"
        if not isinstance(f, dict):
            problems.append((where, f, "must be a mapping {at_s, fault, for_s?}"))
            continue
        if f.get("fault") not in allowed or f.get("fault") is None:
            problems.append(
                (f"{where}.fault", f.get("fault"), f"unknown fault (known: {[a for a in allowed if a]})")
            )
            continue
        at_s = f.get("at_s")
        if not isinstance(at_s, int | float) or isinstance(at_s, bool) or at_s < 0:
            problems.append((f"{where}.at_s", at_s, "must be a number of seconds >= 0"))
            continue
        for_s = f.get("for_s")
        if for_s is not None and (
            not isinstance(for_s, int | float) or isinstance(for_s, bool) or for_s <= 0
        ):
            problems.append((f"{where}.for_s", for_s, "must be a number of seconds > 0"))
            continue
        out.append(dict(f))
    return out


@dataclass
class _Check:
    """What parsing a scenario accumulates: the problems, and the ids seen across the park."""

    problems: list[tuple[str, object, str]] = field(default_factory=list)
    seen_gateways: set[str] = field(default_factory=set)
    seen_lines: set[str] = field(default_factory=set)

    def add(self, at: str, value: object, reason: str) -> None:
        self.problems.append((at, value, reason))


@dataclass
class _GatewayCheck:
    """What parsing one gateway's devices accumulates: device ids and Modbus unit ids in use."""

    spec: GatewaySpec
    used_ids: dict[str, set[int]] = field(default_factory=lambda: {"tcp": set(), "rtu": set()})
    seen_devices: set[str] = field(default_factory=set)


def _is_id(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and ID_RE.match(value) is not None


def _mapping_or_empty(value: Any, at: str, check: _Check) -> dict[str, Any] | None:
    """`value or {}` when that is a mapping; else the problem is recorded and None returned."""
    node = value or {}
    if not isinstance(node, dict):
        check.add(at, node, "must be a mapping")
        return None
    return node


def _check_park_id(raw: dict[str, Any], check: _Check) -> Any:
    park = raw.get("park")
    park_id = park.get("id") if isinstance(park, dict) else None
    if not _is_id(park_id):
        check.add("park.id", park_id, "must be a lowercase id [a-z0-9-]")
    return park_id


def _firm_list(raw: dict[str, Any], check: _Check) -> list[Any]:
    firms = raw.get("firms")
    if not isinstance(firms, list) or not firms:
        check.add("firms", firms, "must be a non-empty list")
        return []
    return firms


def _parse_firm(fi: int, firm: Any, check: _Check) -> list[GatewaySpec]:
    fat = f"firms[{fi}]"
    if not isinstance(firm, dict):
        check.add(fat, firm, "must be a mapping")
        return []
    firm_id = firm.get("id")
    if not _is_id(firm_id):
        check.add(f"{fat}.id", firm_id, "must be a lowercase id [a-z0-9-]")
        firm_id = f"firm{fi}"
    gateways = []
    for gi, gw in enumerate(firm.get("gateways") or []):
        gspec = _parse_gateway(f"{fat}.gateways[{gi}]", gw, firm_id, check)
        if gspec is not None:
            gateways.append(gspec)
    return gateways


def _uplink_outage_ok(outage: Any) -> bool:
    return outage is None or (
        isinstance(outage, dict) and all(_non_negative(outage.get(k)) for k in ("after_s", "for_s"))
    )


def _parse_gateway(gat: str, gw: Any, firm_id: str, check: _Check) -> GatewaySpec | None:
    if not isinstance(gw, dict):
        check.add(gat, gw, "must be a mapping")
        return None
    gw_id = gw.get("id")
    if not _is_id(gw_id):
        check.add(f"{gat}.id", gw_id, "must be a lowercase id [a-z0-9-]")
        return None
    if gw_id in check.seen_gateways:
        check.add(f"{gat}.id", gw_id, "duplicate gateway id")
    check.seen_gateways.add(gw_id)
    gsim = _mapping_or_empty(gw.get("sim"), f"{gat}.sim", check)
    if gsim is None:
        gsim = {}
    outage = gsim.get("uplink_outage")
    if not _uplink_outage_ok(outage):
        check.add(f"{gat}.sim.uplink_outage", outage, "must be {after_s: seconds, for_s: seconds}")
    for key in GATEWAY_PROTOCOL_KEYS:
        check_gateway_protocols(f"{gat}.sim.{key}", key, gsim.get(key), check.add)
    gcheck = _GatewayCheck(GatewaySpec(id=gw_id, firm=firm_id, sim=dict(gsim)))
    for di, dev in enumerate(gw.get("devices") or []):
        spec = _parse_device(f"{gat}.devices[{di}]", dev, gcheck, check)
        if spec is not None:
            gcheck.spec.devices.append(spec)
    _assign_unit_ids(gcheck)
    _assign_dlt645_addresses(gcheck, check)
    return gcheck.spec


def _assign_dlt645_addresses(gcheck: _GatewayCheck, check: _Check) -> None:
    """DL/T 645 meters without an `address` get 000000000001, … (their position on the bus)."""
    meters = [d for d in gcheck.spec.devices if d.transport == "dlt645"]
    taken = {d.params["address"] for d in meters if "address" in d.params}
    n = 0
    for d in meters:
        if "address" not in d.params:
            n += 1
            while f"{n:012d}" in taken:
                n += 1
            d.params["address"] = f"{n:012d}"
    seen: set[str] = set()
    for d in meters:
        if d.params["address"] in seen:
            check.add(
                f"{gcheck.spec.id}/{d.id}.sim.address", d.params["address"], "duplicate address on this bus"
            )
        seen.add(d.params["address"])


def _assign_unit_ids(gcheck: _GatewayCheck) -> None:
    """Give the Modbus devices without a `unit_id` the lowest free ones, in file order."""
    used_ids = gcheck.used_ids
    for d in gcheck.spec.devices:
        if d.transport in used_ids and d.unit_id is None:
            free = next(i for i in range(1, 248) if i not in used_ids[d.transport])
            d.unit_id = free
            used_ids[d.transport].add(free)


@dataclass
class _DeviceHead:
    """A device's checked common part, before its model-specific checks."""

    at: str
    raw: dict[str, Any]
    id: str
    model: str
    kind: str
    sim: dict[str, Any]
    params: dict[str, Any]
    seed: int


def _check_device_id(dat: str, dev: dict[str, Any], gcheck: _GatewayCheck, check: _Check) -> str | None:
    """The device's id when it is a valid id; a duplicate on the gateway is reported but kept."""
    dev_id = dev.get("id")
    if not _is_id(dev_id):
        check.add(f"{dat}.id", dev_id, "must be a lowercase id [a-z0-9-]")
        return None
    if dev_id in gcheck.seen_devices:
        check.add(f"{dat}.id", dev_id, "duplicate device id on this gateway")
    gcheck.seen_devices.add(dev_id)
    return dev_id


def _check_model(dat: str, dev: dict[str, Any], check: _Check) -> str | None:
    """The device's model when known; its `kind` and `profile` are checked against it."""
    model = dev.get("model")
    if model not in _KIND_OF_MODEL:
        check.add(f"{dat}.model", model, f"unknown model (known: {sorted(_KIND_OF_MODEL)})")
        return None
    kind = str(dev.get("kind"))
    if kind != _KIND_OF_MODEL[model]:
        check.add(f"{dat}.kind", kind, f"model {model} is a {_KIND_OF_MODEL[model]}")
    profile = dev.get("profile")
    if profile is not None and profile != model:
        check.add(f"{dat}.profile", profile, f"must equal the model name {model!r}")
    assert isinstance(model, str)
    return model


def _device_seed(dat: str, sim: dict[str, Any], gw_id: str, dev_id: str, check: _Check) -> int:
    seed = sim.get("seed", _seed(gw_id, dev_id))
    if not isinstance(seed, int) or isinstance(seed, bool):
        check.add(f"{dat}.sim.seed", seed, "must be an integer")
        return 0
    return seed


def _device_head(dat: str, dev: Any, gcheck: _GatewayCheck, check: _Check) -> _DeviceHead | None:
    if not isinstance(dev, dict):
        check.add(dat, dev, "must be a mapping")
        return None
    dev_id = _check_device_id(dat, dev, gcheck, check)
    if dev_id is None:
        return None
    model = _check_model(dat, dev, check)
    if model is None:
        return None
    sim = _mapping_or_empty(dev.get("sim"), f"{dat}.sim", check)
    if sim is None:
        return None
    params = {k: v for k, v in sim.items() if k not in ("transport", "unit_id", "seed", "faults")}
    if dev.get("rated_power_kw") is not None:
        params.setdefault("rated_power_kw", dev["rated_power_kw"])
    seed = _device_seed(dat, sim, gcheck.spec.id, dev_id, check)
    return _DeviceHead(dat, dev, dev_id, model, str(dev.get("kind")), sim, params, seed)


def _parse_device(dat: str, dev: Any, gcheck: _GatewayCheck, check: _Check) -> DeviceSpec | None:
    head = _device_head(dat, dev, gcheck, check)
    if head is None:
        return None
    if head.model == LINE_MODEL:
        return _parse_line_sensor(head, gcheck, check)
    protocol = _PROTOCOL_PARSERS.get(head.model)
    if protocol is not None:
        g = gcheck.spec
        spec = DeviceSpec(g.id, g.firm, head.id, head.kind, head.model, "", None, head.seed, {}, [], head.raw)
        return protocol(spec, head.at, head.sim, head.params, check.add)
    return _parse_modbus_device(head, gcheck, check)


def _parse_line_sensor(head: _DeviceHead, gcheck: _GatewayCheck, check: _Check) -> DeviceSpec:
    dat, sim = head.at, head.sim
    extra = set(sim) - _LINE_KEYS
    if extra:
        check.add(f"{dat}.sim", sorted(extra), f"unknown line sensor keys (known: {sorted(_LINE_KEYS)})")
    faults = _check_faults(sim.get("faults"), f"{dat}.sim.faults", ("timeout", "clock_drift"), check.problems)
    g = gcheck.spec
    spec = DeviceSpec(
        g.id, g.firm, head.id, "line", head.model, "mqtt", None, head.seed, head.params, faults, head.raw
    )
    if spec.line_id in check.seen_lines:
        check.add(f"{dat}.sim.line_id", spec.line_id, "duplicate line id in this park")
    check.seen_lines.add(spec.line_id)
    return spec


_PROTOCOL_PARSERS = (
    dict.fromkeys(DLT645_MODELS, parse_dlt645_meter)
    | dict.fromkeys(HJ212_MODELS, parse_hj212_stack)
    | {OPCUA_MODEL: parse_opcua_machine}
)


def _valid_unit_id(unit_id: Any) -> bool:
    return isinstance(unit_id, int) and not isinstance(unit_id, bool) and 1 <= unit_id <= 247


def _check_unit_id(dat: str, unit_id: Any, transport: str, gcheck: _GatewayCheck, check: _Check) -> bool:
    """False when a given `unit_id` is not 1..247; a duplicate is reported but kept."""
    if unit_id is None:
        return True
    if not _valid_unit_id(unit_id):
        check.add(f"{dat}.sim.unit_id", unit_id, "must be an integer 1..247")
        return False
    if unit_id in gcheck.used_ids[transport]:
        check.add(f"{dat}.sim.unit_id", unit_id, f"already used on this gateway's {transport} server")
    gcheck.used_ids[transport].add(unit_id)
    return True


def _parse_modbus_device(head: _DeviceHead, gcheck: _GatewayCheck, check: _Check) -> DeviceSpec | None:
    dat, sim = head.at, head.sim
    transport = sim.get("transport", "tcp")
    if transport not in ("tcp", "rtu"):
        check.add(f"{dat}.sim.transport", transport, "must be tcp or rtu")
        return None
    unit_id = sim.get("unit_id")
    if not _check_unit_id(dat, unit_id, transport, gcheck, check):
        return None
    faults = _check_faults(sim.get("faults"), f"{dat}.sim.faults", FAULTS, check.problems)
    for key, value, reason in check_params(_KIND_OF_MODEL[head.model], head.params):
        check.add(f"{dat}.sim.{key}" if key in sim else f"{dat}.{key}", value, reason)
    g = gcheck.spec
    return DeviceSpec(
        g.id,
        g.firm,
        head.id,
        head.kind,
        head.model,
        transport,
        unit_id,
        head.seed,
        head.params,
        faults,
        head.raw,
    )


def parse_scenario(raw: Any, source: str = "<scenario>") -> Scenario:
    """Check the simulator-relevant part of a scenario; every problem is reported with its path."""
    if not isinstance(raw, dict):
        raise ScenarioError(
            source, [("(file)", type(raw).__name__, "must be a mapping with park, clusters, firms")]
        )
    check = _Check()
    park_id = _check_park_id(raw, check)
    gateways: list[GatewaySpec] = []
    for fi, firm in enumerate(_firm_list(raw, check)):
        gateways.extend(_parse_firm(fi, firm, check))
    if check.problems:
        raise ScenarioError(source, check.problems)
    assert isinstance(park_id, str)
    return Scenario(source=source, park_id=park_id, raw=raw, gateways=gateways)
