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
Gateway `sim:` keys: uplink_outage: {after_s, for_s} (copied to the manifest for whoever drives
the gateway's uplink), rtu: {baudrate, parity, stopbits} (the RTU bus of that gateway).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from simulators.device import FAULTS, check_params
from simulators.errors import ScenarioError
from simulators.modbus import MODELS

__all__ = ["LINE_MODEL", "DeviceSpec", "GatewaySpec", "Scenario", "load_scenario", "parse_scenario"]

LINE_MODEL = "line-sensor"
ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_KIND_OF_MODEL = {m: ("cems" if m == "cems-analyser" else "meter") for m in MODELS} | {LINE_MODEL: "line"}
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


def parse_scenario(raw: Any, source: str = "<scenario>") -> Scenario:
    """Check the simulator-relevant part of a scenario; every problem is reported with its path."""
    problems: list[tuple[str, object, str]] = []
    if not isinstance(raw, dict):
        raise ScenarioError(
            source, [("(file)", type(raw).__name__, "must be a mapping with park, clusters, firms")]
        )
    park = raw.get("park")
    park_id = park.get("id") if isinstance(park, dict) else None
    if not isinstance(park_id, str) or not ID_RE.match(park_id):
        problems.append(("park.id", park_id, "must be a lowercase id [a-z0-9-]"))
    firms = raw.get("firms")
    if not isinstance(firms, list) or not firms:
        problems.append(("firms", firms, "must be a non-empty list"))
        firms = []
    gateways: list[GatewaySpec] = []
    seen_gw: set[str] = set()
    seen_lines: set[str] = set()
    for fi, firm in enumerate(firms):
        fat = f"firms[{fi}]"
        if not isinstance(firm, dict):
            problems.append((fat, firm, "must be a mapping"))
            continue
        firm_id = firm.get("id")
        if not isinstance(firm_id, str) or not ID_RE.match(firm_id):
            problems.append((f"{fat}.id", firm_id, "must be a lowercase id [a-z0-9-]"))
            firm_id = f"firm{fi}"
        for gi, gw in enumerate(firm.get("gateways") or []):
            gat = f"{fat}.gateways[{gi}]"
            if not isinstance(gw, dict):
                problems.append((gat, gw, "must be a mapping"))
                continue
            gw_id = gw.get("id")
            if not isinstance(gw_id, str) or not ID_RE.match(gw_id):
                problems.append((f"{gat}.id", gw_id, "must be a lowercase id [a-z0-9-]"))
                continue
            if gw_id in seen_gw:
                problems.append((f"{gat}.id", gw_id, "duplicate gateway id"))
            seen_gw.add(gw_id)
            gsim = gw.get("sim") or {}
            if not isinstance(gsim, dict):
                problems.append((f"{gat}.sim", gsim, "must be a mapping"))
                gsim = {}
            outage = gsim.get("uplink_outage")
            if outage is not None and not (
                isinstance(outage, dict) and all(_non_negative(outage.get(k)) for k in ("after_s", "for_s"))
            ):
                problems.append(
                    (f"{gat}.sim.uplink_outage", outage, "must be {after_s: seconds, for_s: seconds}")
                )
            gspec = GatewaySpec(id=gw_id, firm=firm_id, sim=dict(gsim))
            used_ids: dict[str, set[int]] = {"tcp": set(), "rtu": set()}
            seen_dev: set[str] = set()
            for di, dev in enumerate(gw.get("devices") or []):
                dat = f"{gat}.devices[{di}]"
                if not isinstance(dev, dict):
                    problems.append((dat, dev, "must be a mapping"))
                    continue
                dev_id = dev.get("id")
                if not isinstance(dev_id, str) or not ID_RE.match(dev_id):
                    problems.append((f"{dat}.id", dev_id, "must be a lowercase id [a-z0-9-]"))
                    continue
                if dev_id in seen_dev:
                    problems.append((f"{dat}.id", dev_id, "duplicate device id on this gateway"))
                seen_dev.add(dev_id)
                model = dev.get("model")
                if model not in _KIND_OF_MODEL:
                    problems.append(
                        (f"{dat}.model", model, f"unknown model (known: {sorted(_KIND_OF_MODEL)})")
                    )
                    continue
                kind = str(dev.get("kind"))
                if kind != _KIND_OF_MODEL[model]:
                    problems.append((f"{dat}.kind", kind, f"model {model} is a {_KIND_OF_MODEL[model]}"))
                profile = dev.get("profile")
                if profile is not None and profile != model:
                    problems.append((f"{dat}.profile", profile, f"must equal the model name {model!r}"))
                sim = dev.get("sim") or {}
                if not isinstance(sim, dict):
                    problems.append((f"{dat}.sim", sim, "must be a mapping"))
                    continue
                params = {k: v for k, v in sim.items() if k not in ("transport", "unit_id", "seed", "faults")}
                if dev.get("rated_power_kw") is not None:
                    params.setdefault("rated_power_kw", dev["rated_power_kw"])
                seed = sim.get("seed", _seed(gw_id, dev_id))
                if not isinstance(seed, int) or isinstance(seed, bool):
                    problems.append((f"{dat}.sim.seed", seed, "must be an integer"))
                    seed = 0
                if model == LINE_MODEL:
                    extra = set(sim) - _LINE_KEYS
                    if extra:
                        problems.append(
                            (
                                f"{dat}.sim",
                                sorted(extra),
                                f"unknown line sensor keys (known: {sorted(_LINE_KEYS)})",
                            )
                        )
                    faults = _check_faults(
                        sim.get("faults"), f"{dat}.sim.faults", ("timeout", "clock_drift"), problems
                    )
                    spec = DeviceSpec(
                        gw_id, firm_id, dev_id, "line", model, "mqtt", None, seed, params, faults, dev
                    )
                    if spec.line_id in seen_lines:
                        problems.append(
                            (f"{dat}.sim.line_id", spec.line_id, "duplicate line id in this park")
                        )
                    seen_lines.add(spec.line_id)
                    gspec.devices.append(spec)
                    continue
                transport = sim.get("transport", "tcp")
                if transport not in ("tcp", "rtu"):
                    problems.append((f"{dat}.sim.transport", transport, "must be tcp or rtu"))
                    continue
                unit_id = sim.get("unit_id")
                if unit_id is not None:
                    if not isinstance(unit_id, int) or isinstance(unit_id, bool) or not 1 <= unit_id <= 247:
                        problems.append((f"{dat}.sim.unit_id", unit_id, "must be an integer 1..247"))
                        continue
                    if unit_id in used_ids[transport]:
                        problems.append(
                            (
                                f"{dat}.sim.unit_id",
                                unit_id,
                                f"already used on this gateway's {transport} server",
                            )
                        )
                    used_ids[transport].add(unit_id)
                faults = _check_faults(sim.get("faults"), f"{dat}.sim.faults", FAULTS, problems)
                for key, value, reason in check_params(_KIND_OF_MODEL[model], params):
                    problems.append((f"{dat}.sim.{key}" if key in sim else f"{dat}.{key}", value, reason))
                gspec.devices.append(
                    DeviceSpec(
                        gw_id, firm_id, dev_id, kind, model, transport, unit_id, seed, params, faults, dev
                    )
                )
            # assign the remaining unit ids in file order
            for d in gspec.devices:
                if d.transport in used_ids and d.unit_id is None:
                    free = next(i for i in range(1, 248) if i not in used_ids[d.transport])
                    d.unit_id = free
                    used_ids[d.transport].add(free)
            gateways.append(gspec)
    if problems:
        raise ScenarioError(source, problems)
    assert isinstance(park_id, str)
    return Scenario(source=source, park_id=park_id, raw=raw, gateways=gateways)
