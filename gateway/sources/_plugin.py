"""What a source plugin is made of, and the model pieces every plugin's config builds on.

A plugin owns top-level keys of the gateway file. Its `PluginKeys` subclass declares them as
pydantic fields and carries the plugin itself (`SourcePlugin`) as the class variable `plugin`:
the cross-checks over those keys, the factory of its sources, its `check` and its one-line
summary. gateway/sources/__init__.py registers a plugin by naming that class among the bases
of `SourceKeys`.

This module imports nothing of gateway/config.py (which imports the plugins), so a plugin's
models can build on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict

from gateway.counters import CounterTracker
from gateway.stats import DeviceStats
from parkpulse.errors import FieldError
from parkpulse.settings import parse_mqtt_url

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

__all__ = [
    "DEVICE_PATTERN",
    "NAME_PATTERN",
    "CheckContext",
    "CheckResult",
    "Emit",
    "MqttUrl",
    "PluginKeys",
    "Source",
    "SourceContext",
    "SourcePlugin",
    "Strict",
]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
DEVICE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$"


class Strict(BaseModel):
    """A config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


def _mqtt_url(v: str) -> str:
    if not v.startswith(("mqtt://", "mqtts://")):
        raise ValueError("must start with mqtt:// or mqtts://")
    parse_mqtt_url(v)
    return v


MqttUrl = Annotated[str, AfterValidator(_mqtt_url)]
"""A broker URL: mqtt://… or mqtts://…, user:password@ allowed."""

# A reading row as it goes on the wire: [device, metric, ts_ms, value, quality(, event)]
Emit = Callable[[list[list[Any]]], None]


@dataclass(slots=True)
class SourceContext:
    emit: Emit
    counters: CounterTracker
    flush: Callable[[], bool] | None = None
    """Write the readings emitted so far to the spool now; True when they are on disk (None: no spool)."""


class Source(Protocol):
    """A running source. One that has more to report than its devices' stats (a receiver's
    connections and dead letters) also defines `status() -> dict`, shown in /healthz under
    `sources.<name>`."""

    name: str

    def stats(self) -> list[DeviceStats]: ...

    async def run(self) -> None:
        """Poll or listen until cancelled."""
        ...


@dataclass(slots=True)
class CheckResult:
    """One device read once by `parkpulse-gateway check`: its rows (metric, value, unit, quality, event) or its error."""

    device: str
    error: str | None = None
    latency_ms: float = 0.0
    rows: list[tuple[str, float | None, str, int, dict[str, Any] | None]] = field(default_factory=list)


@dataclass(slots=True)
class CheckContext:
    """What the plugins' cross-checks share: the device ids used so far (id -> path of the first use)."""

    device_ids: dict[str, str] = field(default_factory=dict)

    def claim_device(self, device: str, at: str) -> str | None:
        """Record `device` as used at `at`; the path of an earlier use, or None."""
        first = self.device_ids.setdefault(device, at)
        return None if first == at else first


@dataclass(frozen=True, slots=True)
class SourcePlugin:
    """A source plugin: its name, and what it does with the keys its `PluginKeys` class declares.

    `problems(ctx, **keys)` gets one keyword argument per key: the validated value, or, for a
    file with errors, the value validated on its own (list entries that fail their own
    validation are None, another key that fails is its default); it returns the cross-check
    errors with their paths in the file. `build`, `check` and `summary` get the valid config.
    """

    name: str
    description: str
    problems: Callable[..., list[FieldError]]
    build: Callable[[GatewayConfig, SourceContext], list[Source]]
    check: Callable[[GatewayConfig, float], Awaitable[list[CheckResult]]]
    summary: Callable[[GatewayConfig], str]
    location_tags: frozenset[str] = frozenset()
    """Names pydantic puts in an error's location that are not keys in the file (tagged-union branches)."""


class PluginKeys(Strict):
    """Base of a plugin's keys model: its fields are the top-level keys of the gateway file the plugin owns.

    Keys of type `Path` (or `Path | None`) are relative to the config file's folder."""

    plugin: ClassVar[SourcePlugin]
