"""MQTT topic layout: pp/v1/{park}/{firm}/{gateway}/{data|status|resend|config}."""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = [
    "ID_PATTERN",
    "TopicParts",
    "alerts_topic",
    "config_topic",
    "data_topic",
    "parse_topic",
    "resend_topic",
    "shared_data_subscription",
    "status_topic",
]

ROOT = "pp/v1"
ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
_ID = re.compile(ID_PATTERN)


class TopicParts(NamedTuple):
    park: str
    firm: str
    gateway: str
    kind: str  # "data" or "status"


def _check(name: str, value: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"{name}: ids are lowercase [a-z0-9-], got {value!r}")
    return value


def data_topic(park: str, firm: str, gateway: str) -> str:
    return f"{ROOT}/{_check('park', park)}/{_check('firm', firm)}/{_check('gateway', gateway)}/data"


def status_topic(park: str, firm: str, gateway: str) -> str:
    return f"{ROOT}/{_check('park', park)}/{_check('firm', firm)}/{_check('gateway', gateway)}/status"


def resend_topic(park: str, firm: str, gateway: str) -> str:
    """Where the platform asks a gateway to re-send a range of its batches (QoS 1, not retained)."""
    return f"{ROOT}/{_check('park', park)}/{_check('firm', firm)}/{_check('gateway', gateway)}/resend"


def config_topic(park: str, firm: str, gateway: str) -> str:
    """Where the platform keeps a managed gateway's desired configuration (QoS 1, retained)."""
    return f"{ROOT}/{_check('park', park)}/{_check('firm', firm)}/{_check('gateway', gateway)}/config"


def alerts_topic(park: str, *rest: str) -> str:
    return "/".join([ROOT, _check("park", park), "alerts", *rest])


def shared_data_subscription(group: str = "ingest", park: str = "+") -> str:
    """The subscription every ingest process shares, so the broker splits the load."""
    return f"$share/{group}/{ROOT}/{park}/+/+/data"


def parse_topic(topic: str) -> TopicParts | None:
    parts = topic.split("/")
    if len(parts) != 6 or parts[0] != "pp" or parts[1] != "v1" or parts[5] not in ("data", "status"):
        return None
    park, firm, gateway = parts[2], parts[3], parts[4]
    if not (_ID.match(park) and _ID.match(firm) and _ID.match(gateway)):
        return None
    return TopicParts(park, firm, gateway, parts[5])
