"""The `mqtt` source: line sensors that publish their own JSON, mapped onto devices and catalogue metrics."""

from __future__ import annotations

from gateway.sources import register_source
from gateway.sources.mqtt._listener import MqttListener, MqttPlugin, map_message

__all__ = ["MqttListener", "MqttPlugin", "map_message"]

register_source(MqttPlugin())
