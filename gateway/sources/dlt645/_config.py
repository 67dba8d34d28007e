"""The `dlt645` keys of a gateway file (`dlt645_profiles_dir`, `dlt645_buses`, `dlt645_meters`) and their cross-checks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from gateway.sources._plugin import DEVICE_PATTERN, NAME_PATTERN, CheckContext, PluginKeys, Strict
from gateway.sources.dlt645._frame import address_bytes
from gateway.sources.dlt645._profiles import Profile, list_profiles
from parkpulse.errors import ConfigError, FieldError, ValidationReport

__all__ = ["Dlt645Keys", "Meter", "MeterScale", "SerialBus", "TcpBus", "dlt645_problems"]


class SerialBus(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    type: Literal["serial"]
    port: str = Field(description="serial device, e.g. /dev/ttyUSB1")
    baudrate: int = Field(
        default=2400, ge=300, le=115200, description="DL/T 645-2007 default 2400; 1997 meters 1200"
    )
    parity: Literal["E", "N", "O"] = Field(
        default="E", description="the standard's 8E1; N only for a pseudo-terminal"
    )
    stopbits: Literal[1, 2] = 1
    timeout_s: float = Field(
        default=1.0, gt=0, le=60, description="wait for a reply's first byte and its end"
    )
    preamble: int = Field(default=4, ge=0, le=4, description="FE wake-up bytes before each request")
    inter_frame_gap_ms: float = Field(
        default=20.0, ge=0, le=5000, description="silence after a reply before the next request"
    )

    @property
    def bits_per_byte(self) -> int:
        return 1 + 8 + (0 if self.parity == "N" else 1) + self.stopbits


class TcpBus(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    type: Literal["tcp"]
    host: str = Field(description="serial-to-Ethernet converter in transparent mode")
    port: int = Field(ge=1, le=65535)
    timeout_s: float = Field(default=2.0, gt=0, le=60)
    preamble: int = Field(default=4, ge=0, le=4)
    inter_frame_gap_ms: float = Field(default=5.0, ge=0, le=5000)


class MeterScale(Strict):
    ct_ratio: float = Field(
        default=1.0, gt=0, description="multiplies the profile items marked ratio: ct / ctpt"
    )
    pt_ratio: float = Field(
        default=1.0, gt=0, description="multiplies the profile items marked ratio: pt / ctpt"
    )


class Meter(Strict):
    id: str = Field(pattern=DEVICE_PATTERN)
    bus: str
    address: str = Field(description="12 BCD digits as printed on the meter; high byte pairs may be AA")
    profile: str
    interval_s: float = Field(default=15.0, gt=0, le=86400)
    timeout_s: float | None = Field(default=None, gt=0, le=60)
    metrics: list[str] | None = Field(default=None, description="read only these metrics of the profile")
    use_blocks: bool = Field(
        default=True, description="read the profile's blocks (one request for several items)"
    )
    scale: MeterScale = MeterScale()
    rated_power_kw: float | None = Field(default=None, gt=0)
    enabled: bool = True

    @field_validator("address", mode="before")
    @classmethod
    def _address(cls, v: object) -> object:
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10**12:
            return f"{v:012d}"  # YAML reads an unquoted 000012345678 as a number
        return v

    @field_validator("address")
    @classmethod
    def _address_ok(cls, v: str) -> str:
        address_bytes(v)  # raises ValueError with the reason
        return v.upper()


class Dlt645Keys(PluginKeys):
    """The top-level keys the `dlt645` source owns."""

    dlt645_profiles_dir: Path | None = Field(default=None, description="extra DL/T 645 profiles (*.yaml)")
    dlt645_buses: list[Annotated[SerialBus | TcpBus, Field(discriminator="type")]] = Field(
        default_factory=list
    )
    dlt645_meters: list[Meter] = Field(default_factory=list)

    def dlt645_bus(self, name: str) -> SerialBus | TcpBus:
        for b in self.dlt645_buses:
            if b.name == name:
                return b
        raise KeyError(name)

    def dlt645_profiles(self) -> dict[str, Profile]:
        return list_profiles([self.dlt645_profiles_dir] if self.dlt645_profiles_dir else None)


def _bus_problems(
    buses: Sequence[SerialBus | TcpBus | None],
) -> tuple[dict[str, SerialBus | TcpBus], list[FieldError]]:
    by_name: dict[str, SerialBus | TcpBus] = {}
    where: dict[str, int] = {}
    problems: list[FieldError] = []
    for i, b in enumerate(buses):
        if b is None:
            continue
        if b.name in by_name:
            problems.append(FieldError(f"dlt645_buses[{i}].name", b.name, "duplicate bus name"))
        by_name.setdefault(b.name, b)
        ep = b.port if isinstance(b, SerialBus) else f"{b.host}:{b.port}"
        if ep in where:
            problems.append(
                FieldError(f"dlt645_buses[{i}].port", b.port, f"same port as dlt645_buses[{where[ep]}]")
            )
        where.setdefault(ep, i)
    return by_name, problems


def _meter_problems(at: str, m: Meter, prof: Profile) -> list[FieldError]:
    names = {it.metric for it in prof.items}
    return [
        FieldError(f"{at}.metrics[{j}]", x, f"profile {m.profile} has no such metric")
        for j, x in enumerate(m.metrics or [])
        if x not in names
    ]


def dlt645_problems(
    ctx: CheckContext,
    *,
    dlt645_profiles_dir: Path | None,
    dlt645_buses: Sequence[SerialBus | TcpBus | None],
    dlt645_meters: Sequence[Meter | None],
) -> list[FieldError]:
    """Profiles readable, unique bus names and ports, a meter's bus and profile exist, unique ids and addresses per bus."""
    problems: list[FieldError] = []
    try:
        profiles = list_profiles([dlt645_profiles_dir] if dlt645_profiles_dir else None)
    except (ConfigError, ValidationReport) as exc:
        problems.append(FieldError("dlt645_profiles_dir", str(dlt645_profiles_dir), str(exc)))
        profiles = list_profiles()
    by_name, bus_problems = _bus_problems(dlt645_buses)
    problems += bus_problems
    addresses: dict[tuple[str, str], int] = {}
    for i, m in enumerate(dlt645_meters):
        if m is None:
            continue
        at = f"dlt645_meters[{i}]"
        first = ctx.claim_device(m.id, at)
        if first is not None:
            problems.append(FieldError(f"{at}.id", m.id, f"duplicate device id (also {first})"))
        if m.bus not in by_name:
            problems.append(
                FieldError(f"{at}.bus", m.bus, f"no such DL/T 645 bus (known: {sorted(by_name) or 'none'})")
            )
        key = (m.bus, m.address)
        if key in addresses:
            problems.append(
                FieldError(
                    f"{at}.address", m.address, f"same bus and address as dlt645_meters[{addresses[key]}]"
                )
            )
        addresses.setdefault(key, i)
        prof = profiles.get(m.profile)
        if prof is None:
            problems.append(
                FieldError(
                    f"{at}.profile",
                    m.profile,
                    f"unknown DL/T 645 profile (known: {', '.join(sorted(profiles))})",
                )
            )
        else:
            problems += _meter_problems(at, m, prof)
    return problems + _wildcard_problems(dlt645_meters)


def _wildcard_problems(meters: Sequence[Meter | None]) -> list[FieldError]:
    """A wildcard address reaches every meter on the bus: only for a meter alone on its bus."""
    per_bus: dict[str, int] = {}
    for m in meters:
        if m is not None and m.enabled:
            per_bus[m.bus] = per_bus.get(m.bus, 0) + 1
    return [
        FieldError(
            f"dlt645_meters[{i}].address",
            m.address,
            f"a wildcard (AA) address only works for a meter alone on its bus ({per_bus[m.bus]} on {m.bus!r})",
        )
        for i, m in enumerate(meters)
        if m is not None and m.enabled and _has_wildcard(m.address) and per_bus[m.bus] > 1
    ]


def _has_wildcard(address: str) -> bool:
    return any(address[i : i + 2] == "AA" for i in range(0, 12, 2))
