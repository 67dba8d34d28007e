"""The `mqtt` key of a gateway file (a list of broker connections with their topics) and its cross-checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from gateway.sources._plugin import DEVICE_PATTERN, NAME_PATTERN, CheckContext, MqttUrl, PluginKeys, Strict
from parkpulse.catalogue import load_catalogue
from parkpulse.errors import FieldError

__all__ = ["MqttKeys", "MqttSource", "MqttTopic", "mqtt_problems"]


class MqttTopic(Strict):
    topic: str
    device: str = Field(pattern=DEVICE_PATTERN)
    fields: dict[str, str] = Field(min_length=1, description="JSON field -> catalogue metric")
    timestamp_field: str | None = Field(default="ts", description="null: use the arrival time")
    timestamp_unit: Literal["ms", "s", "iso"] = "ms"
    max_clock_skew_s: float = Field(default=300.0, gt=0)


class MqttSource(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    url: MqttUrl
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    qos: Literal[0, 1] = 1
    topics: list[MqttTopic] = Field(min_length=1)


class MqttKeys(PluginKeys):
    """The top-level key the `mqtt` source owns."""

    mqtt: list[MqttSource] = Field(default_factory=list)


def mqtt_problems(ctx: CheckContext, *, mqtt: Sequence[MqttSource | None]) -> list[FieldError]:
    """Every topic's device id unused elsewhere in the file; every mapped field a catalogue metric."""
    catalogue = load_catalogue().by_name()
    problems: list[FieldError] = []
    for i, s in enumerate(mqtt):
        if s is None:
            continue
        for j, t in enumerate(s.topics):
            at = f"mqtt[{i}].topics[{j}]"
            first = ctx.claim_device(t.device, at)
            if first is not None:
                problems.append(FieldError(f"{at}.device", t.device, f"device id already used by {first}"))
            for field, metric in t.fields.items():
                if metric not in catalogue:
                    problems.append(FieldError(f"{at}.fields.{field}", metric, "not a catalogue metric"))
    return problems
