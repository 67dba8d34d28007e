"""The common config changes of the console's form, as pure functions on a config dict.

Add a meter from a profile (Modbus: bus, unit id; DL/T 645: bus, address), change a device's
poll interval, enable or disable a device. Each returns a new dict and leaves its input alone;
form values that are not even of the right type raise `EditRefused` with every problem, named
by form field. Everything else (ranges, duplicate ids, unknown profiles …) is the gateway's own
validator's job when the fleet library stores the result.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from parkpulse.errors import FieldError, ParkPulseError

__all__ = [
    "BUS_KEYS",
    "METER_KEYS",
    "DeviceRow",
    "EditRefused",
    "add_meter",
    "buses_of",
    "change_device",
    "devices_of",
]

# source -> top-level key of its buses / of its meters in a gateway file
BUS_KEYS = {"modbus": "buses", "dlt645": "dlt645_buses"}
METER_KEYS = {"modbus": "devices", "dlt645": "dlt645_meters"}


class EditRefused(ParkPulseError):
    """A form's values cannot make a config change; `.problems` names every bad field."""

    def __init__(self, problems: list[FieldError]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class DeviceRow:
    """One device of a config as the form lists it; `ref` is how the form names it."""

    ref: str
    source: str
    id: str
    bus: str | None
    profile: str | None
    interval_s: float | None
    enabled: bool | None  # None: this kind of device has no on/off switch


def _entries(config: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = config.get(key)
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def devices_of(config: dict[str, Any]) -> list[DeviceRow]:
    """Modbus devices and DL/T 645 meters (interval, on/off), OPC UA devices (interval)."""
    rows: list[DeviceRow] = []
    for source, key in METER_KEYS.items():
        for e in _entries(config, key):
            rows.append(
                DeviceRow(
                    ref=f"{source}:{e.get('id')}",
                    source=source,
                    id=str(e.get("id")),
                    bus=str(e["bus"]) if "bus" in e else None,
                    profile=str(e["profile"]) if "profile" in e else None,
                    interval_s=_number(e.get("interval_s")),
                    enabled=e.get("enabled", True) is not False,
                )
            )
    for server in _entries(config, "opcua"):
        for e in _entries(server, "devices"):
            rows.append(
                DeviceRow(
                    ref=f"opcua:{server.get('name')}:{e.get('id')}",
                    source="opcua",
                    id=str(e.get("id")),
                    bus=str(server.get("name")),
                    profile=None,
                    interval_s=_number(e.get("poll_interval_s", server.get("poll_interval_s"))),
                    enabled=None,
                )
            )
    return rows


def buses_of(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, bus name) of every Modbus and DL/T 645 bus, in file order."""
    return [
        (source, str(b["name"]))
        for source, key in BUS_KEYS.items()
        for b in _entries(config, key)
        if "name" in b
    ]


def _split(ref: str, field: str, problems: list[FieldError]) -> tuple[str, str]:
    source, sep, name = ref.partition(":")
    if not sep or source not in BUS_KEYS or not name:
        problems.append(FieldError(field, ref, "choose one of the listed entries"))
        return "", ""
    return source, name


def _interval(text: str, field: str, problems: list[FieldError]) -> float | None:
    """A poll interval in seconds, or None for an empty field."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        problems.append(FieldError(field, text, "must be a number of seconds"))
        return None
    if not math.isfinite(value) or value <= 0:
        problems.append(FieldError(field, text, "must be a number of seconds above 0"))
        return None
    return int(value) if value == int(value) else value


def _meter_entry(
    source: str, meter_id: str, bus: str, where: str, profile: str, problems: list[FieldError]
) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": meter_id, "bus": bus}
    where = where.strip()
    if source == "modbus":
        try:
            entry["device_id"] = int(where)
        except ValueError:
            problems.append(
                FieldError("meter.unit", where, "a Modbus unit id is a whole number (1…247 on RS-485)")
            )
    else:
        if not where:
            problems.append(FieldError("meter.unit", where, "a DL/T 645 meter needs its 12-digit address"))
        entry["address"] = where.upper()
    entry["profile"] = profile
    return entry


def add_meter(
    config: dict[str, Any],
    *,
    meter_id: str,
    bus_ref: str,
    unit: str,
    profile_ref: str,
    interval: str = "",
) -> dict[str, Any]:
    """A copy of `config` with one more meter: `bus_ref` / `profile_ref` are `source:name`."""
    problems: list[FieldError] = []
    meter_id = meter_id.strip()
    if not meter_id:
        problems.append(FieldError("meter.id", meter_id, "a meter needs an id"))
    source, bus = _split(bus_ref, "meter.bus", problems)
    p_source, profile = _split(profile_ref, "meter.profile", problems)
    if source and p_source and p_source != source:
        problems.append(
            FieldError(
                "meter.profile",
                profile_ref,
                f"a {source} bus needs a {source} profile (got a {p_source} one)",
            )
        )
    if source and (source, bus) not in buses_of(config):
        problems.append(FieldError("meter.bus", bus_ref, "no such bus in this config"))
    entry = _meter_entry(source or "modbus", meter_id, bus, unit, profile, problems)
    seconds = _interval(interval, "meter.interval_s", problems)
    if seconds is not None:
        entry["interval_s"] = seconds
    if problems:
        raise EditRefused(problems)
    out = copy.deepcopy(config)
    meters = out.get(METER_KEYS[source])
    out[METER_KEYS[source]] = [*(meters if isinstance(meters, list) else []), entry]
    return out


def _find(config: dict[str, Any], ref: str) -> tuple[dict[str, Any], str] | None:
    """The entry a device ref names in `config` (mutable), and the key of its interval."""
    parts = ref.split(":")
    if len(parts) == 2 and parts[0] in METER_KEYS:
        for e in _entries(config, METER_KEYS[parts[0]]):
            if str(e.get("id")) == parts[1]:
                return e, "interval_s"
    if len(parts) == 3 and parts[0] == "opcua":
        for server in _entries(config, "opcua"):
            if str(server.get("name")) == parts[1]:
                for e in _entries(server, "devices"):
                    if str(e.get("id")) == parts[2]:
                        return e, "poll_interval_s"
    return None


def change_device(
    config: dict[str, Any], *, ref: str, interval: str = "", enabled: str = ""
) -> dict[str, Any]:
    """A copy of `config` with one device's interval and/or on/off switch changed.

    `enabled` is "" (unchanged), "on" or "off"; an empty `interval` leaves it as it is."""
    problems: list[FieldError] = []
    out = copy.deepcopy(config)
    found = _find(out, ref)
    if found is None:
        raise EditRefused([FieldError("device.ref", ref, "no such device in this config")])
    entry, interval_key = found
    seconds = _interval(interval, "device.interval_s", problems)
    if enabled not in ("", "on", "off"):
        problems.append(FieldError("device.enabled", enabled, "must be on, off or unchanged"))
    elif enabled and ref.startswith("opcua:"):
        problems.append(FieldError("device.enabled", enabled, "an OPC UA device has no on/off switch"))
    if seconds is None and not enabled and not problems:
        problems.append(
            FieldError("device.interval_s", interval, "nothing to change: give an interval or on/off")
        )
    if problems:
        raise EditRefused(problems)
    if seconds is not None:
        entry[interval_key] = seconds
    if enabled:
        entry["enabled"] = enabled == "on"
    return out
