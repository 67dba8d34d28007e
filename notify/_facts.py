"""The channels' API figures from `data/channel_facts.yaml`, each with its source and verified mark."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from parkpulse.errors import ConfigError

__all__ = ["Fact", "channel_facts", "fact_value"]


@dataclass(frozen=True)
class Fact:
    path: str
    value: object
    source: str
    verified: bool


@lru_cache(maxsize=1)
def channel_facts() -> dict[str, Fact]:
    """Every figure of the file, by dotted path (`wecom.text_max_bytes`)."""
    text = resources.files("notify").joinpath("data", "channel_facts.yaml").read_text(encoding="utf-8")
    doc: Any = yaml.safe_load(text)
    out: dict[str, Fact] = {}
    for channel, entries in doc.items():
        if channel == "version":
            continue
        for name, entry in entries.items():
            path = f"{channel}.{name}"
            if not isinstance(entry, dict) or not {"value", "source", "verified"} <= entry.keys():
                raise ConfigError(
                    f"channel_facts.yaml: {path}: needs value, source and verified (got {entry!r})"
                )
            if not isinstance(entry["verified"], bool):
                raise ConfigError(f"channel_facts.yaml: {path}.verified: must be true or false")
            out[path] = Fact(path, entry["value"], str(entry["source"]), entry["verified"])
    return out


def fact_value(path: str) -> Any:
    return channel_facts()[path].value
