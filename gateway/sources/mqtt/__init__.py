"""The `mqtt` source: line sensors that publish their own JSON, mapped onto devices and catalogue metrics.

It owns the key `mqtt` of a gateway file (`_config.py`), the listeners (`_listener.py`) and its
part of `check` (`_check.py`).
"""

from __future__ import annotations

from typing import ClassVar

from gateway.sources._plugin import SourcePlugin
from gateway.sources.mqtt import _check, _listener
from gateway.sources.mqtt._config import MqttKeys, MqttSource, MqttTopic, mqtt_problems
from gateway.sources.mqtt._listener import MqttListener, map_message

__all__ = ["Keys", "MqttKeys", "MqttListener", "MqttSource", "MqttTopic", "map_message"]


class Keys(MqttKeys):
    plugin: ClassVar[SourcePlugin] = SourcePlugin(
        name="mqtt",
        description="sensors publishing their own JSON on an MQTT broker",
        problems=mqtt_problems,
        build=_listener.build,
        check=_check.check,
        summary=_listener.summary,
    )
