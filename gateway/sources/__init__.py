"""Source plugins (Telegraf-style) and their registration.

A plugin is a folder here (README.md, sample.yaml, testcases.yaml, its code) whose package
exports `Keys`: the top-level keys of the gateway file it owns, carrying the plugin (see
`_plugin.py`). Registering it is one line: its `Keys` among the bases of `SourceKeys` below.
`GatewayConfig` inherits `SourceKeys`, so the plugins' keys are typed fields of the config, and
`config_problems`, `build_sources` and `check` walk `PLUGINS` in this order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.sources import dlt645, hj212, modbus, mqtt, opcua
from gateway.sources._plugin import (
    CheckContext,
    CheckResult,
    Emit,
    PluginKeys,
    Source,
    SourceContext,
    SourcePlugin,
)

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

__all__ = [
    "PLUGINS",
    "CheckContext",
    "CheckResult",
    "Emit",
    "PluginKeys",
    "Source",
    "SourceContext",
    "SourceKeys",
    "SourcePlugin",
    "build_sources",
    "registered_sources",
]


class SourceKeys(
    modbus.Keys,
    mqtt.Keys,
    hj212.Keys,
    dlt645.Keys,
    opcua.Keys,
):
    """The keys of a gateway file that the source plugins own; one base per plugin (the registration)."""


PLUGINS: tuple[type[PluginKeys], ...] = tuple(b for b in SourceKeys.__bases__ if issubclass(b, PluginKeys))


def registered_sources() -> dict[str, SourcePlugin]:
    return {k.plugin.name: k.plugin for k in PLUGINS}


def build_sources(cfg: GatewayConfig, ctx: SourceContext) -> list[Source]:
    return [src for k in PLUGINS for src in k.plugin.build(cfg, ctx)]
