"""The gateway's YAML configuration: one file per gateway, validated with every error's path.

`load_config(path)` parses and validates the file and raises `ValidationReport` listing every
problem with its path in the file (e.g. `devices[3].profile`) and the offending value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from parkpulse.catalogue import load_catalogue
from parkpulse.errors import ConfigError, FieldError, ValidationReport, field_path
from parkpulse.settings import parse_mqtt_url
from parkpulse.wire import ID_PATTERN

__all__ = [
    "Batching",
    "Bus",
    "Device",
    "GatewayConfig",
    "HttpConfig",
    "Identity",
    "MqttSource",
    "MqttTopic",
    "RtuBus",
    "Scale",
    "SpoolConfig",
    "TcpBus",
    "TlsConfig",
    "Uplink",
    "config_problems",
    "load_config",
    "parse_config",
]

DEVICE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Identity(_Strict):
    park: str = Field(pattern=ID_PATTERN)
    firm: str = Field(pattern=ID_PATTERN)
    id: str = Field(pattern=ID_PATTERN, description="the gateway id, unique in the park")


class TlsConfig(_Strict):
    ca: Path | None = Field(default=None, description="CA bundle that signed the broker's certificate")
    cert: Path | None = Field(default=None, description="client certificate (mutual TLS)")
    key: Path | None = Field(default=None, description="client private key")
    insecure: bool = Field(default=False, description="skip host-name verification (testing only)")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together")
        return self


class Uplink(_Strict):
    url: str = Field(description="mqtt://host:1883 or mqtts://host:8883 (TLS)")
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    tls: TlsConfig | None = None
    client_id: str | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    max_inflight: int = Field(default=16, ge=1, le=1000, description="batches published and not yet acknowledged")
    replay_batches_per_s: float = Field(default=20.0, gt=0, description="bound on batches sent per second")
    reconnect_min_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)
    status_interval_s: float = Field(
        default=30.0, gt=0, description="how often the retained status (with per-device health) is refreshed"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("mqtt://", "mqtts://")):
            raise ValueError("must start with mqtt:// or mqtts://")
        parse_mqtt_url(v)
        return v


class SpoolConfig(_Strict):
    path: Path = Field(description="SQLite file of the store-and-forward spool")
    max_mb: float = Field(default=256.0, gt=0, description="size bound; when reached the spool thins itself")
    thin_window_s: float = Field(default=60.0, gt=0, description="gauges kept at one per this window when thinning")
    counter_window_s: float = Field(default=900.0, gt=0, description="counters kept at one per window (last resort)")
    keep_acked_s: float = Field(
        default=86_400.0, ge=0,
        description="acknowledged batches are kept this long so the platform can ask for them again (0 = not kept)",
    )
    keep_acked_share: float = Field(
        default=0.5, ge=0, le=1,
        description="share of max_mb acknowledged batches may take; they are evicted first when the spool is full",
    )


class Batching(_Strict):
    max_readings: int = Field(default=2000, ge=1, le=100_000)
    max_age_s: float = Field(default=1.0, gt=0, le=3600)
    queue_readings: int = Field(
        default=200_000,
        ge=100,
        description="readings kept in memory while the spool cannot be written; beyond it the oldest are dropped as a gap",
    )


class HttpConfig(_Strict):
    listen: str | None = Field(default="127.0.0.1:9108", description="host:port for /metrics and /healthz; null disables")

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is None:
            return v
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be host:port")
        return v


class TcpBus(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    type: Literal["tcp"]
    host: str | None = Field(default=None, description="default host of the devices on this bus")
    port: int = Field(default=502, ge=1, le=65535)
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    shared: bool = Field(
        default=False,
        description="true for a Modbus TCP-to-RTU converter: one connection, devices polled one at a time",
    )
    inter_frame_gap_ms: float = Field(default=0.0, ge=0, description="pause between requests on a shared bus")


class RtuBus(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
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


Bus = TcpBus | RtuBus


class Scale(_Strict):
    ct_ratio: float = Field(default=1.0, gt=0, description="current-transformer ratio, e.g. 200/5 = 40")
    pt_ratio: float = Field(default=1.0, gt=0, description="voltage-transformer ratio")
    factor: dict[str, float] = Field(default_factory=dict, description="extra factor per metric")


class ExtraRegister(_Strict):
    metric: str
    address: int = Field(ge=0, le=65535)
    function: Literal["holding", "input"] = "holding"
    type: Literal["u16", "i16", "u32", "i32", "f32", "u64", "i64", "f64"] = "f32"
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    scale: float = 1.0
    offset: float = 0.0
    unit: str


class Device(_Strict):
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


class MqttTopic(_Strict):
    topic: str
    device: str = Field(pattern=DEVICE_PATTERN)
    fields: dict[str, str] = Field(min_length=1, description="JSON field -> catalogue metric")
    timestamp_field: str | None = Field(default="ts", description="null: use the arrival time")
    timestamp_unit: Literal["ms", "s", "iso"] = "ms"
    max_clock_skew_s: float = Field(default=300.0, gt=0)


class MqttSource(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    url: str
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    qos: Literal[0, 1] = 1
    topics: list[MqttTopic] = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("mqtt://", "mqtts://")):
            raise ValueError("must start with mqtt:// or mqtts://")
        parse_mqtt_url(v)
        return v


_BUS_ADAPTER: TypeAdapter[TcpBus | RtuBus] = TypeAdapter(Annotated[TcpBus | RtuBus, Field(discriminator="type")])


class GatewayConfig(_Strict):
    gateway: Identity
    uplink: Uplink
    spool: SpoolConfig
    batching: Batching = Batching()
    http: HttpConfig = HttpConfig()
    profiles_dir: Path | None = Field(default=None, description="extra profile files (*.yaml)")
    buses: list[Annotated[TcpBus | RtuBus, Field(discriminator="type")]] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)
    mqtt: list[MqttSource] = Field(default_factory=list)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def bus(self, name: str) -> TcpBus | RtuBus:
        for b in self.buses:
            if b.name == name:
                return b
        raise KeyError(name)


@dataclass
class _Partial:
    """The parts of an invalid file that validate on their own (None where an entry does not)."""

    profiles_dir: Path | None
    buses: list[TcpBus | RtuBus | None]
    devices: list[Device | None]
    mqtt: list[MqttSource | None]


def _partial(raw: dict[str, Any]) -> _Partial:
    def each(key: str, model: Any) -> list[Any]:
        items = raw.get(key)
        if not isinstance(items, list):
            return []
        out: list[Any] = []
        for item in items:
            try:
                out.append(model.validate_python(item) if hasattr(model, "validate_python") else model.model_validate(item))
            except ValidationError:
                out.append(None)
        return out

    pd = raw.get("profiles_dir")
    return _Partial(
        profiles_dir=Path(pd) if isinstance(pd, str) else None,
        buses=each("buses", _BUS_ADAPTER),
        devices=each("devices", Device),
        mqtt=each("mqtt", MqttSource),
    )


def config_problems(cfg: GatewayConfig | _Partial) -> list[FieldError]:
    """Cross-references: buses, profiles, unique ids, addresses, catalogue metrics, register overlaps.

    Works on a partial config too (entries that failed their own validation are None), so a file
    with several kinds of errors gets all of them reported at once."""
    from gateway.profiles import WORDS, catalogue_problems, list_profiles

    problems: list[FieldError] = []
    try:
        profiles = list_profiles([cfg.profiles_dir] if cfg.profiles_dir else None)
    except (ConfigError, ValidationReport) as exc:
        problems.append(FieldError("profiles_dir", str(cfg.profiles_dir), str(exc)))
        profiles = list_profiles()
    catalogue = {m.name: m for m in load_catalogue().metrics}
    buses: dict[str, TcpBus | RtuBus] = {}
    ports: dict[str, int] = {}
    for i, b in enumerate(cfg.buses):
        if b is None:
            continue
        if b.name in buses:
            problems.append(FieldError(f"buses[{i}].name", b.name, "duplicate bus name"))
        buses[b.name] = b
        if isinstance(b, RtuBus):
            if b.port in ports:
                problems.append(FieldError(f"buses[{i}].port", b.port, f"serial port already used by buses[{ports[b.port]}]"))
            ports.setdefault(b.port, i)
    ids: dict[str, str] = {}
    units: dict[tuple[str, str, int, int], int] = {}
    for i, d in enumerate(cfg.devices):
        if d is None:
            continue
        at = f"devices[{i}]"
        if d.id in ids:
            problems.append(FieldError(f"{at}.id", d.id, f"duplicate device id (also {ids[d.id]})"))
        ids.setdefault(d.id, at)
        bus = buses.get(d.bus)
        if bus is None:
            problems.append(FieldError(f"{at}.bus", d.bus, f"no such bus (known: {sorted(buses) or 'none'})"))
        elif isinstance(bus, TcpBus):
            host = d.host or bus.host
            if not host:
                problems.append(FieldError(f"{at}.host", d.host, f"bus {bus.name!r} has no host, so the device needs one"))
            key = (bus.name, host or "", d.port or bus.port, d.device_id)
            if key in units:
                problems.append(FieldError(f"{at}.device_id", d.device_id, f"same endpoint and unit as devices[{units[key]}]"))
            units.setdefault(key, i)
        else:
            if d.host or d.port:
                problems.append(FieldError(f"{at}.host", d.host or d.port, "an RTU device has no host/port"))
            if not 1 <= d.device_id <= 247:
                problems.append(FieldError(f"{at}.device_id", d.device_id, "RTU unit ids are 1..247"))
            key = (bus.name, "", 0, d.device_id)
            if key in units:
                problems.append(FieldError(f"{at}.device_id", d.device_id, f"same bus and unit as devices[{units[key]}]"))
            units.setdefault(key, i)
        prof = profiles.get(d.profile)
        if prof is None:
            problems.append(FieldError(f"{at}.profile", d.profile, f"unknown profile (known: {', '.join(sorted(profiles))})"))
            continue
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
                    problems.append(FieldError(f"{rat}.address", r.address, f"overlaps {what} ({fn} {a0}..{a1 - 1})"))
            spans.append((r.function, lo, hi, rat))
    for i, s in enumerate(cfg.mqtt):
        if s is None:
            continue
        for j, t in enumerate(s.topics):
            at = f"mqtt[{i}].topics[{j}]"
            if t.device in ids:
                problems.append(FieldError(f"{at}.device", t.device, f"device id already used by {ids[t.device]}"))
            ids.setdefault(t.device, at)
            for field, metric in t.fields.items():
                if metric not in catalogue:
                    problems.append(FieldError(f"{at}.fields.{field}", metric, "not a catalogue metric"))
    return problems


def parse_config(raw: object, source: str = "config") -> GatewayConfig:
    """Validate a parsed document; raises ValidationReport with every problem."""
    if not isinstance(raw, dict):
        raise ValidationReport(source, [FieldError("(file)", type(raw).__name__, "must be a mapping")])
    # pick the bus model by its `type` so errors name only the relevant fields
    problems: list[FieldError] = []
    try:
        cfg = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            loc = err["loc"]
            if len(loc) >= 3 and loc[0] == "buses" and isinstance(loc[2], str) and loc[2] in ("tcp", "rtu"):
                bus = raw.get("buses", [])[loc[1]] if isinstance(raw.get("buses"), list) else {}
                btype = bus.get("type") if isinstance(bus, dict) else None
                if btype in ("tcp", "rtu") and loc[2] != btype:
                    continue
            problems.append(FieldError(field_path(loc, skip=("tcp", "rtu")), err.get("input"), err["msg"]))
        problems.extend(config_problems(_partial(raw)))
        raise ValidationReport(source, _dedupe(problems)) from None
    problems = config_problems(cfg)
    if problems:
        raise ValidationReport(source, problems)
    return cfg


def _dedupe(problems: list[FieldError]) -> list[FieldError]:
    seen: set[tuple[str, str]] = set()
    out = []
    for p in problems:
        k = (p.path, p.reason)
        if k not in seen:
            seen.add(k)
            out.append(p)
    return out


def load_config(path: str | Path) -> GatewayConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationReport(str(p), [FieldError("(file)", str(p), f"cannot read: {exc.strerror}")]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationReport(str(p), [FieldError("(file)", str(p), f"not YAML: {exc}")]) from None
    base = p.parent
    if isinstance(raw, dict) and isinstance(raw.get("profiles_dir"), str) and not Path(raw["profiles_dir"]).is_absolute():
        raw["profiles_dir"] = str(base / raw["profiles_dir"])
    cfg = parse_config(raw, str(p))
    if not cfg.spool.path.is_absolute():
        cfg.spool.path = base / cfg.spool.path
    if cfg.profiles_dir is not None and not cfg.profiles_dir.is_absolute():
        cfg.profiles_dir = base / cfg.profiles_dir
    return cfg
