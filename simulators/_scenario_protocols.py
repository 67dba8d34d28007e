"""The scenario's DL/T 645 meters, HJ 212 stacks and OPC UA machines: their `sim:` keys checked.

Each parser fills a DeviceSpec already holding the device's common part (ids, model, seed) with
its transport (`dlt645`, `hj212`, `opcua`), its parameters and faults; every problem goes to `add`
with its path in the file, the value and the reason.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from simulators.device import check_params

if TYPE_CHECKING:
    from simulators.scenario import DeviceSpec

__all__ = [
    "GATEWAY_PROTOCOL_KEYS",
    "check_gateway_protocols",
    "parse_dlt645_meter",
    "parse_hj212_stack",
    "parse_opcua_machine",
]

Add = Callable[[str, object, str], None]

_DLT645_KEYS = {"address", "import_kwh", "rated_power_kw", "time_scale", "faults", "seed"}
_DLT645_FAULTS = ("silence", "abnormal", "bad_checksum")
_HJ212_OWN_KEYS = {"mn", "password", "backfill_hours"}
_OPCUA_KEYS = {"ideal_rate", "reject_ratio", "rated_kw", "time_scale", "seed"}
GATEWAY_PROTOCOL_KEYS = ("dlt645", "opcua")
_GATEWAY_KEYS: dict[str, dict[str, tuple[object, ...] | None]] = {
    # key -> allowed values (None: a positive integer / a lowercase id, see _gateway_value_ok)
    "dlt645": {"transport": ("tcp", "pty"), "baudrate": None, "parity": ("E", "N", "O")},
    "opcua": {"line_id": None},
}


def _number(value: Any, *, positive: bool = False) -> bool:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return ok and (value > 0 if positive else value >= 0)


def _unknown(at: str, sim: dict[str, Any], known: set[str], what: str, add: Add) -> None:
    extra = set(sim) - known
    if extra:
        add(at, sorted(extra), f"unknown {what} keys (known: {sorted(known)})")


def _dlt645_faults(at: str, faults: Any, add: Add) -> list[dict[str, Any]]:
    if faults is None:
        return []
    if not isinstance(faults, list):
        add(at, faults, "must be a list of {at_s, fault, for_s?}")
        return []
    out = []
    for i, f in enumerate(faults):
        where = f"{at}[{i}]"
        if not isinstance(f, dict) or f.get("fault") not in _DLT645_FAULTS:
            add(
                f"{where}.fault",
                f.get("fault") if isinstance(f, dict) else f,
                f"must be one of {list(_DLT645_FAULTS)}",
            )
        elif not _number(f.get("at_s")):
            add(f"{where}.at_s", f.get("at_s"), "must be a number of seconds >= 0")
        elif f.get("for_s") is not None and not _number(f.get("for_s"), positive=True):
            add(f"{where}.for_s", f.get("for_s"), "must be a number of seconds > 0")
        else:
            out.append(dict(f))
    return out


def parse_dlt645_meter(
    spec: DeviceSpec, at: str, sim: dict[str, Any], params: dict[str, Any], add: Add
) -> DeviceSpec:
    """A DL/T 645 meter on its gateway's bus (the address is assigned later when not given)."""
    _unknown(f"{at}.sim", sim, _DLT645_KEYS, "DL/T 645 meter", add)
    address = sim.get("address")
    if address is not None and not (isinstance(address, str) and len(address) == 12 and address.isdigit()):
        add(f"{at}.sim.address", address, "must be 12 decimal digits, quoted")
    for key in ("import_kwh", "rated_power_kw", "time_scale"):
        if key in params and not _number(params[key], positive=key != "import_kwh"):
            add(f"{at}.{key}" if key not in sim else f"{at}.sim.{key}", params[key], "must be a number > 0")
    spec.transport = "dlt645"
    spec.params = {k: v for k, v in params.items() if k in _DLT645_KEYS}
    spec.faults = _dlt645_faults(f"{at}.sim.faults", sim.get("faults"), add)
    return spec


def parse_hj212_stack(
    spec: DeviceSpec, at: str, sim: dict[str, Any], params: dict[str, Any], add: Add
) -> DeviceSpec:
    """A CEMS data logger (数采仪) that sends HJ 212 minute data to its gateway."""
    mn, password = sim.get("mn"), sim.get("password", "123456")
    if mn is not None and not (isinstance(mn, str) and 1 <= len(mn) <= 24 and mn.isalnum()):
        add(f"{at}.sim.mn", mn, "must be 1..24 letters or digits, quoted")
    if not isinstance(password, str) or not 1 <= len(password) <= 64:
        add(f"{at}.sim.password", "***", "must be a string of 1..64 characters")
    backfill = sim.get("backfill_hours", 0)
    if not (isinstance(backfill, int) and not isinstance(backfill, bool) and 0 <= backfill <= 24):
        add(f"{at}.sim.backfill_hours", backfill, "must be an integer 0..24")
    process = {k: v for k, v in params.items() if k not in _HJ212_OWN_KEYS and k != "rated_power_kw"}
    for key, value, reason in check_params("cems", process):
        add(f"{at}.sim.{key}", value, reason)
    spec.transport = "hj212"
    spec.params = {
        **process,
        "mn": mn if mn is not None else f"{zlib.crc32(f'{spec.gateway}/{spec.id}'.encode()):014d}",
        "password": password,
        "backfill_hours": backfill,
    }
    return spec


def parse_opcua_machine(
    spec: DeviceSpec, at: str, sim: dict[str, Any], params: dict[str, Any], add: Add
) -> DeviceSpec:
    """A machine of its gateway's OPC UA line (state, good/reject counters, energy, ideal rate)."""
    _unknown(f"{at}.sim", sim, _OPCUA_KEYS, "OPC UA machine", add)
    for key in ("ideal_rate", "rated_kw", "time_scale"):
        if key in sim and not _number(sim[key], positive=True):
            add(f"{at}.sim.{key}", sim[key], "must be a number > 0")
    ratio = sim.get("reject_ratio", 0.02)
    if not (_number(ratio) and ratio < 1):
        add(f"{at}.sim.reject_ratio", ratio, "must be a number in [0, 1)")
    spec.transport = "opcua"
    spec.params = {k: v for k, v in sim.items() if k in _OPCUA_KEYS - {"seed"}}
    return spec


def _gateway_value_ok(key: str, value: Any, allowed: tuple[object, ...] | None) -> bool:
    if allowed is not None:
        return value in allowed
    if key == "baudrate":
        return isinstance(value, int) and not isinstance(value, bool) and value > 0
    return isinstance(value, str) and value.replace("-", "").replace("_", "").isalnum()


def check_gateway_protocols(at: str, key: str, node: Any, add: Add) -> None:
    """A gateway's `sim.dlt645` / `sim.opcua` mapping: known keys, allowed values."""
    if node is None:
        return
    if not isinstance(node, dict):
        add(at, node, "must be a mapping")
        return
    known = _GATEWAY_KEYS[key]
    _unknown(at, node, set(known), f"gateway {key}", add)
    for k, value in node.items():
        if k in known and not _gateway_value_ok(k, value, known[k]):
            add(f"{at}.{k}", value, f"must be one of {list(known[k] or ())}" if known[k] else "invalid value")
