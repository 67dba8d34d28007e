"""The `modbus` keys of a gateway file (`profiles_dir`, `buses`, `devices`) and their cross-checks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from gateway.sources._plugin import DEVICE_PATTERN, NAME_PATTERN, CheckContext, PluginKeys, Strict
from gateway.sources.modbus._profiles import WORDS, Profile, catalogue_problems, list_profiles
from parkpulse.errors import ConfigError, FieldError, ValidationReport

__all__ = ["Device", "ExtraRegister", "ModbusKeys", "RtuBus", "Scale", "TcpBus", "modbus_problems"]


class TcpBus(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    type: Literal["tcp"]
    host: str | None = Field(default=None, description="default host of the devices on this bus")
    port: int = Field(default=502, ge=1, le=65535)
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    shared: bool = Field(
        default=False,
        description="true for a Modbus TCP-to-RTU converter: one connection, devices polled one at a time",
    )
    inter_frame_gap_ms: float = Field(default=0.0, ge=0, description="pause between requests on a shared bus")


class RtuBus(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    type: Literal["rtu"]
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0")
    baudrate: int = Field(default=9600, ge=300, le=921600)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    timeout_s: float = Field(default=0.5, gt=0, le=60)
    inter_frame_gap_ms: float | None = Field(
        default=None, ge=0, description="silence between frames; default 3.5 character times (min 1.75 ms)"
    )

    def gap_s(self) -> float:
        if self.inter_frame_gap_ms is not None:
            return self.inter_frame_gap_ms / 1000.0
        bits = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return max(3.5 * bits / self.baudrate, 0.00175)


class Scale(Strict):
    ct_ratio: float = Field(default=1.0, gt=0, description="current-transformer ratio, e.g. 200/5 = 40")
    pt_ratio: float = Field(default=1.0, gt=0, description="voltage-transformer ratio")
    factor: dict[str, float] = Field(default_factory=dict, description="extra factor per metric")


class ExtraRegister(Strict):
    metric: str
    address: int = Field(ge=0, le=65535)
    function: Literal["holding", "input"] = "holding"
    type: Literal["u16", "i16", "u32", "i32", "f32", "u64", "i64", "f64"] = "f32"
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    scale: float = 1.0
    offset: float = 0.0
    unit: str


class Device(Strict):
    id: str = Field(pattern=DEVICE_PATTERN)
    bus: str
    device_id: int = Field(ge=0, le=255, description="Modbus unit / slave id")
    profile: str
    host: str | None = Field(default=None, description="TCP host (overrides the bus's)")
    port: int | None = Field(default=None, ge=1, le=65535)
    interval_s: float = Field(default=5.0, gt=0, le=86400)
    timeout_s: float | None = Field(default=None, gt=0, le=60)
    scale: Scale = Scale()
    metrics: list[str] | None = Field(default=None, description="read only these metrics of the profile")
    registers: list[ExtraRegister] = Field(default_factory=list, description="registers added to the profile")
    max_gap: int | None = Field(default=None, ge=0, le=100)
    rated_power_kw: float | None = Field(default=None, gt=0, description="for implausible-jump detection")
    enabled: bool = True


class ModbusKeys(PluginKeys):
    """The top-level keys the `modbus` source owns."""

    profiles_dir: Path | None = Field(default=None, description="extra profile files (*.yaml)")
    buses: list[Annotated[TcpBus | RtuBus, Field(discriminator="type")]] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)

    def bus(self, name: str) -> TcpBus | RtuBus:
        for b in self.buses:
            if b.name == name:
                return b
        raise KeyError(name)


# (bus, host, port, unit) -> index of the first device there
_Units = dict[tuple[str, str, int, int], int]


def modbus_problems(
    ctx: CheckContext,
    *,
    profiles_dir: Path | None,
    buses: Sequence[TcpBus | RtuBus | None],
    devices: Sequence[Device | None],
) -> list[FieldError]:
    """Buses, profiles, unique device and unit ids, addresses, catalogue metrics, register overlaps."""
    problems: list[FieldError] = []
    try:
        profiles = list_profiles([profiles_dir] if profiles_dir else None)
    except (ConfigError, ValidationReport) as exc:
        problems.append(FieldError("profiles_dir", str(profiles_dir), str(exc)))
        profiles = list_profiles()
    by_name = _bus_problems(buses, problems)
    units: _Units = {}
    for i, d in enumerate(devices):
        if d is None:
            continue
        at = f"devices[{i}]"
        first = ctx.claim_device(d.id, at)
        if first is not None:
            problems.append(FieldError(f"{at}.id", d.id, f"duplicate device id (also {first})"))
        bus = by_name.get(d.bus)
        if bus is None:
            problems.append(
                FieldError(f"{at}.bus", d.bus, f"no such bus (known: {sorted(by_name) or 'none'})")
            )
        else:
            problems += _endpoint_problems(i, d, bus, units)
        prof = profiles.get(d.profile)
        if prof is None:
            problems.append(
                FieldError(
                    f"{at}.profile", d.profile, f"unknown profile (known: {', '.join(sorted(profiles))})"
                )
            )
        else:
            problems += _register_problems(at, d, prof)
    return problems


def _bus_problems(
    buses: Sequence[TcpBus | RtuBus | None], problems: list[FieldError]
) -> dict[str, TcpBus | RtuBus]:
    """Unique bus names and serial ports; the buses by name."""
    by_name: dict[str, TcpBus | RtuBus] = {}
    ports: dict[str, int] = {}
    for i, b in enumerate(buses):
        if b is None:
            continue
        if b.name in by_name:
            problems.append(FieldError(f"buses[{i}].name", b.name, "duplicate bus name"))
        by_name[b.name] = b
        if isinstance(b, RtuBus):
            if b.port in ports:
                problems.append(
                    FieldError(
                        f"buses[{i}].port", b.port, f"serial port already used by buses[{ports[b.port]}]"
                    )
                )
            ports.setdefault(b.port, i)
    return by_name


def _endpoint_problems(i: int, d: Device, bus: TcpBus | RtuBus, units: _Units) -> list[FieldError]:
    """A device's host/port fit its bus, and no other device answers at the same endpoint and unit id."""
    at = f"devices[{i}]"
    problems: list[FieldError] = []
    if isinstance(bus, TcpBus):
        host = d.host or bus.host
        if not host:
            problems.append(
                FieldError(f"{at}.host", d.host, f"bus {bus.name!r} has no host, so the device needs one")
            )
        key, where = (bus.name, host or "", d.port or bus.port, d.device_id), "same endpoint and unit"
    else:
        if d.host or d.port:
            problems.append(FieldError(f"{at}.host", d.host or d.port, "an RTU device has no host/port"))
        if not 1 <= d.device_id <= 247:
            problems.append(FieldError(f"{at}.device_id", d.device_id, "RTU unit ids are 1..247"))
        key, where = (bus.name, "", 0, d.device_id), "same bus and unit"
    if key in units:
        problems.append(FieldError(f"{at}.device_id", d.device_id, f"{where} as devices[{units[key]}]"))
    units.setdefault(key, i)
    return problems


def _register_problems(at: str, d: Device, prof: Profile) -> list[FieldError]:
    """The device's metric subset and factors exist; its extra registers are catalogue metrics that overlap nothing."""
    problems: list[FieldError] = []
    names = {r.metric for r in prof.registers}
    for j, m in enumerate(d.metrics or []):
        if m not in names:
            problems.append(FieldError(f"{at}.metrics[{j}]", m, f"profile {d.profile} has no such metric"))
    for m in d.scale.factor:
        if m not in names and m not in {r.metric for r in d.registers}:
            problems.append(FieldError(f"{at}.scale.factor.{m}", m, "no such metric on this device"))
    spans = [
        (r.function, r.pdu, r.pdu + r.words, f"profile {d.profile} {r.metric}")
        for r in prof.resolved()
        if d.metrics is None or r.metric in d.metrics
    ]
    for j, r in enumerate(d.registers):
        rat = f"{at}.registers[{j}]"
        problems += catalogue_problems(rat, r.metric, r.unit)
        if r.metric in names:
            problems.append(FieldError(f"{rat}.metric", r.metric, f"already read by profile {d.profile}"))
        lo, hi = r.address, r.address + WORDS[r.type]
        for fn, a0, a1, what in spans:
            if fn == r.function and lo < a1 and a0 < hi:
                problems.append(
                    FieldError(f"{rat}.address", r.address, f"overlaps {what} ({fn} {a0}..{a1 - 1})")
                )
        spans.append((r.function, lo, hi, rat))
    return problems
