"""The gateway's YAML configuration: one file per gateway, validated with every error's path.

This module holds what every source shares (identity, uplink, spool, batching, http, log level)
and the machinery: `load_config(path)` parses and validates the file and raises
`ValidationReport` listing every problem with its path in the file (e.g. `devices[3].profile`)
and the offending value. The source plugins own their keys (`buses`, `devices`, `mqtt`, …), their
models and their cross-checks (gateway/sources/); `GatewayConfig` inherits their keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from gateway.sources import PLUGINS, CheckContext, SourceKeys
from gateway.sources._plugin import MqttUrl, Strict
from parkpulse.errors import FieldError, ValidationReport, field_path
from parkpulse.wire import ID_PATTERN

__all__ = [
    "Batching",
    "GatewayConfig",
    "HttpConfig",
    "Identity",
    "ManagedSettings",
    "SpoolConfig",
    "TlsConfig",
    "Uplink",
    "config_problems",
    "load_config",
    "parse_config",
]


class Identity(Strict):
    park: str = Field(pattern=ID_PATTERN)
    firm: str = Field(pattern=ID_PATTERN)
    id: str = Field(pattern=ID_PATTERN, description="the gateway id, unique in the park")


class TlsConfig(Strict):
    ca: Path | None = Field(default=None, description="CA bundle that signed the broker's certificate")
    cert: Path | None = Field(default=None, description="client certificate (mutual TLS)")
    key: Path | None = Field(default=None, description="client private key")
    insecure: bool = Field(default=False, description="skip host-name verification (testing only)")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together")
        return self


class Uplink(Strict):
    url: MqttUrl = Field(description="mqtt://host:1883 or mqtts://host:8883 (TLS)")
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    tls: TlsConfig | None = None
    client_id: str | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    max_inflight: int = Field(
        default=16, ge=1, le=1000, description="batches published and not yet acknowledged"
    )
    replay_batches_per_s: float = Field(default=20.0, gt=0, description="bound on batches sent per second")
    reconnect_min_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)
    status_interval_s: float = Field(
        default=30.0, gt=0, description="how often the retained status (with per-device health) is refreshed"
    )


class SpoolConfig(Strict):
    path: Path = Field(description="SQLite file of the store-and-forward spool")
    max_mb: float = Field(default=256.0, gt=0, description="size bound; when reached the spool thins itself")
    thin_window_s: float = Field(
        default=60.0, gt=0, description="gauges kept at one per this window when thinning"
    )
    counter_window_s: float = Field(
        default=900.0, gt=0, description="counters kept at one per window (last resort)"
    )
    keep_acked_s: float = Field(
        default=86_400.0,
        ge=0,
        description="acknowledged batches are kept this long so the platform can ask for them again (0 = not kept)",
    )
    keep_acked_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="share of max_mb acknowledged batches may take; they are evicted first when the spool is full",
    )


class Batching(Strict):
    max_readings: int = Field(default=2000, ge=1, le=100_000)
    max_age_s: float = Field(default=1.0, gt=0, le=3600)
    queue_readings: int = Field(
        default=200_000,
        ge=100,
        description="readings kept in memory while the spool cannot be written; beyond it the oldest are dropped as a gap",
    )


class HttpConfig(Strict):
    listen: str | None = Field(
        default="127.0.0.1:9108", description="host:port for /metrics and /healthz; null disables"
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is None:
            return v
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be host:port")
        return v


class ManagedSettings(Strict):
    """`managed`: the gateway runs the configuration the platform pushes (gateway/managed/)."""

    enabled: bool = Field(default=True, description="false: run this file as it is (local mode)")
    rollback_after_s: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="probation after applying a push: broker unreachable this long, or too many devices "
        "failing at its end, and the gateway returns to its last good configuration",
    )
    max_failing_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="share of devices failing at the end of the probation that rolls back",
    )
    state_dir: Path | None = Field(
        default=None,
        description="pushed configurations, their profiles and the applied state; default `<spool file>.managed/`",
    )
    verify_key: Path = Field(
        description="the platform's public key (PEM, Ed25519) provisioned at install: pushes not signed "
        "with its private half are refused"
    )
    max_push_age_s: float = Field(
        default=7 * 86_400,
        ge=60,
        description="a push issued longer ago than this is stale and refused (the platform re-signs daily)",
    )

    def state_path(self, spool: Path) -> Path:
        return self.state_dir if self.state_dir is not None else spool.with_name(spool.name + ".managed")


class GatewayConfig(SourceKeys):
    """A whole gateway file: the shared keys below plus the keys of every registered source plugin."""

    gateway: Identity
    uplink: Uplink
    spool: SpoolConfig
    batching: Batching = Batching()
    http: HttpConfig = HttpConfig()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    managed: ManagedSettings | None = Field(
        default=None, description="configured from the platform; absent or enabled: false is local mode"
    )


@cache
def _entry_adapters() -> dict[str, tuple[TypeAdapter[Any], bool]]:
    """Per plugin key: the adapter that validates it alone (one entry of a list key), and whether it is a list."""
    out: dict[str, tuple[TypeAdapter[Any], bool]] = {}
    for name, info in SourceKeys.model_fields.items():
        annotation: Any = info.annotation
        is_list = get_origin(annotation) is list
        out[name] = (TypeAdapter(get_args(annotation)[0] if is_list else annotation), is_list)
    return out


def _validated(adapter: TypeAdapter[Any], value: object, fallback: object) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return fallback


def _partial(raw: dict[str, Any]) -> dict[str, Any]:
    """The plugin keys of an invalid file, each validated on its own: a list entry by entry (None
    where one fails), any other key whole (its default where it fails)."""
    out: dict[str, Any] = {}
    for name, (adapter, is_list) in _entry_adapters().items():
        default = SourceKeys.model_fields[name].get_default(call_default_factory=True)
        value = raw.get(name, default)
        if is_list:
            out[name] = [_validated(adapter, item, None) for item in value] if isinstance(value, list) else []
        else:
            out[name] = _validated(adapter, value, default)
    return out


def config_problems(cfg: GatewayConfig | Mapping[str, Any]) -> list[FieldError]:
    """Every plugin's cross-checks (buses, profiles, unique ids, addresses, catalogue metrics, …), in registration order.

    Works on a partial config too (`_partial`), so a file with several kinds of errors gets all
    of them reported at once."""
    keys = cfg if isinstance(cfg, Mapping) else {name: getattr(cfg, name) for name in SourceKeys.model_fields}
    ctx = CheckContext()
    problems: list[FieldError] = []
    for plugin_keys in PLUGINS:
        problems += plugin_keys.plugin.problems(
            ctx, **{name: keys[name] for name in plugin_keys.model_fields}
        )
    return problems


def parse_config(raw: object, source: str = "config") -> GatewayConfig:
    """Validate a parsed document; raises ValidationReport with every problem."""
    if not isinstance(raw, dict):
        raise ValidationReport(source, [FieldError("(file)", type(raw).__name__, "must be a mapping")])
    try:
        cfg = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        tags = frozenset().union(*(k.plugin.location_tags for k in PLUGINS))
        order = {key: i for i, key in enumerate(raw)}  # in the order of the file; missing keys first
        errors = sorted(exc.errors(), key=lambda err: order.get(err["loc"][0] if err["loc"] else "", -1))
        problems = [
            FieldError(field_path(err["loc"], skip=tags), err.get("input"), err["msg"]) for err in errors
        ]
        problems += config_problems(_partial(raw))
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
        raise ValidationReport(
            str(p), [FieldError("(file)", str(p), f"cannot read: {exc.strerror}")]
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationReport(str(p), [FieldError("(file)", str(p), f"not YAML: {exc}")]) from None
    base = p.parent
    if isinstance(
        raw, dict
    ):  # a plugin key that is a path is relative to the file (before its checks read it)
        for name in _path_keys():
            if isinstance(raw.get(name), str) and not Path(raw[name]).is_absolute():
                raw[name] = str(base / raw[name])
    cfg = parse_config(raw, str(p))
    if not cfg.spool.path.is_absolute():
        cfg.spool.path = base / cfg.spool.path
    if (
        cfg.managed is not None
        and cfg.managed.state_dir is not None
        and not cfg.managed.state_dir.is_absolute()
    ):
        cfg.managed.state_dir = base / cfg.managed.state_dir
    if cfg.managed is not None and not cfg.managed.verify_key.is_absolute():
        cfg.managed.verify_key = base / cfg.managed.verify_key
    return cfg


def _path_keys() -> list[str]:
    """The plugin keys typed `Path` or `Path | None`."""
    return [name for name, info in SourceKeys.model_fields.items() if info.annotation in (Path, Path | None)]
