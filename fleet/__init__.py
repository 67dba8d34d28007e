"""Managed gateways, platform side (issue 14): each gateway's desired configuration versioned in
the store with who, when and why, checked with the gateway's own validator before anything is
stored or sent; the library of meter profiles; the publisher that keeps every gateway's retained
`config` message equal to its newest version (`parkpulse fleet serve`); `parkpulse gateways …`.

The wire contract (topic, envelope, the status' `config` object) is the kernel's
(parkpulse/wire/_config_push.py, docs/wire-format.md). Sync psycopg throughout: the console calls
this library through asyncio.to_thread with a connection of its own.
"""

from __future__ import annotations

from fleet import profiles
from fleet._errors import ConfigRejected, FleetError, UnknownGateway, UnknownVersion
from fleet._secrets import MASK, redact_config, restore_secrets
from fleet._store import (
    NOTIFY_CHANNEL,
    ConfigVersion,
    desired,
    diff,
    gateway_identity,
    history,
    rollback,
    set_desired,
    validate,
    version,
)
from fleet._validate import config_problems, used_profiles
from fleet._yaml import from_yaml, to_yaml

__all__ = [
    "MASK",
    "NOTIFY_CHANNEL",
    "ConfigRejected",
    "ConfigVersion",
    "FleetError",
    "UnknownGateway",
    "UnknownVersion",
    "config_problems",
    "desired",
    "diff",
    "from_yaml",
    "gateway_identity",
    "history",
    "profiles",
    "redact_config",
    "restore_secrets",
    "rollback",
    "set_desired",
    "to_yaml",
    "used_profiles",
    "validate",
    "version",
]
