"""Sources registered by name (Telegraf-style): each plugin builds its sources from the gateway config.

A plugin lives in its own folder (README.md, sample.yaml, tests in tests/gateway/) and registers
itself with `register_source`. `build_sources(cfg, ctx)` asks every registered plugin for its
sources.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.config import GatewayConfig
from gateway.counters import CounterTracker
from gateway.stats import DeviceStats

__all__ = ["Emit", "Source", "SourceContext", "SourcePlugin", "build_sources", "register_source", "registered_sources"]

# A reading row as it goes on the wire: [device, metric, ts_ms, value, quality(, event)]
Emit = Callable[[list[list[Any]]], None]


@dataclass(slots=True)
class SourceContext:
    emit: Emit
    counters: CounterTracker


class Source(Protocol):
    name: str

    def stats(self) -> list[DeviceStats]: ...

    async def run(self) -> None:
        """Poll or listen until cancelled."""
        ...


class SourcePlugin(Protocol):
    name: str
    description: str

    def build(self, cfg: GatewayConfig, ctx: SourceContext) -> list[Source]: ...


_REGISTRY: dict[str, SourcePlugin] = {}


def register_source(plugin: SourcePlugin) -> SourcePlugin:
    if plugin.name in _REGISTRY:
        raise ValueError(f"source plugin {plugin.name!r} registered twice")
    _REGISTRY[plugin.name] = plugin
    return plugin


def registered_sources() -> dict[str, SourcePlugin]:
    _load_builtin()
    return dict(_REGISTRY)


def build_sources(cfg: GatewayConfig, ctx: SourceContext) -> list[Source]:
    out: list[Source] = []
    for plugin in registered_sources().values():
        out.extend(plugin.build(cfg, ctx))
    return out


def _load_builtin() -> None:
    from gateway.sources import modbus, mqtt  # noqa: F401  (registers the plugins)
