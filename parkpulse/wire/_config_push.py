"""The managed-configuration contract: what the platform pushes to a gateway and what the
gateway says back about it (docs/wire-format.md, "Configuration").

- `pp/v1/{park}/{firm}/{gateway}/config`, QoS 1, **retained**, written only by the platform's
  `fleet` service account and readable only by that gateway: the desired configuration. A gateway
  offline during a push finds the retained message when it reconnects.
- The gateway answers in its retained status, field `config` (`ConfigState`): the mode it runs in,
  the version it was asked for, the version it runs, and what became of the last push.

The pushed document holds the *managed* part of a gateway file only: the source plugins' keys
(buses, devices, meters, loggers, OPC UA servers …), poll intervals and the profiles they use.
Identity, uplink URL and credentials, spool and HTTP settings stay in the gateway's local file
(`LOCAL_ONLY_KEYS`), so no push can cut a gateway off from the broker or move its spool.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import orjson

from parkpulse.wire._config_state import ConfigState
from parkpulse.wire._limits import INT64_MAX
from parkpulse.wire._models import WIRE_VERSION

__all__ = [
    "CONFIG_MAX_BYTES",
    "LOCAL_ONLY_KEYS",
    "ConfigPush",
    "ConfigState",
    "config_digest",
    "config_payload",
    "parse_config_push",
]

CONFIG_MAX_BYTES = 1_000_000
"""A pushed configuration larger than this is refused on both sides (1 MB: hundreds of devices)."""

LOCAL_ONLY_KEYS = frozenset({"gateway", "park", "firm", "uplink", "spool", "http", "managed"})
"""Top-level keys of a gateway file a push may never carry."""


@dataclass(frozen=True, slots=True)
class ConfigPush:
    """A parsed `config` message."""

    version: int
    sha256: str
    config: dict[str, Any]
    profiles: dict[str, dict[str, Any]]
    issued_at: int
    issued_by: str
    reason: str


def config_digest(config: dict[str, Any], profiles: dict[str, dict[str, Any]]) -> str:
    """SHA-256 of the canonical JSON of the managed config and its profiles (sorted keys)."""
    blob = orjson.dumps({"config": config, "profiles": profiles}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()


def config_payload(
    gateway: str,
    version: int,
    config: dict[str, Any],
    profiles: dict[str, dict[str, Any]] | None = None,
    *,
    issued_by: str,
    reason: str = "",
    now_ms: int | None = None,
) -> bytes:
    """The retained message for `gateway`; `profiles` maps a source name ("modbus", "dlt645") to
    {profile name: profile document}. Raises ValueError for a local-only key or an oversized document."""
    local = sorted(LOCAL_ONLY_KEYS & set(config))
    if local:
        raise ValueError(f"config: local-only keys cannot be pushed (got {', '.join(local)})")
    profiles = profiles or {}
    body = orjson.dumps(
        {
            "v": WIRE_VERSION,
            "gateway": gateway,
            "version": version,
            "sha256": config_digest(config, profiles),
            "issued_at": int(time.time() * 1000) if now_ms is None else now_ms,
            "issued_by": issued_by,
            "reason": reason,
            "config": config,
            "profiles": profiles,
        }
    )
    if len(body) > CONFIG_MAX_BYTES:
        raise ValueError(f"config: {len(body)} bytes, more than {CONFIG_MAX_BYTES}")
    return body


def _field(doc: dict[str, Any], key: str, kind: type, what: str) -> Any:
    v = doc.get(key)
    if not isinstance(v, kind) or isinstance(v, bool):
        raise ValueError(f"{key}: must be {what} (got {v!r:.80})")
    return v


def parse_config_push(payload: bytes, gateway: str) -> ConfigPush:
    """Validate a push meant for `gateway`; ValueError names the field and the value.

    Checks the envelope, the size, the digest and the absence of local-only keys; the config's
    own content is checked by the gateway's validator."""
    if len(payload) > CONFIG_MAX_BYTES:
        raise ValueError(f"payload: {len(payload)} bytes, more than {CONFIG_MAX_BYTES}")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ValueError(f"payload: not JSON (got {payload[:80]!r})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"payload: must be a JSON object (got {type(doc).__name__})")
    if doc.get("v") != WIRE_VERSION:
        raise ValueError(f"v: unsupported version (got {doc.get('v')!r:.40})")
    if doc.get("gateway") != gateway:
        raise ValueError(f"gateway: config is for {doc.get('gateway')!r:.80}, this is {gateway!r}")
    version = _field(doc, "version", int, "an integer 1…2⁶³−1")
    if not 1 <= version <= INT64_MAX:
        raise ValueError(f"version: must be an integer 1…2⁶³−1 (got {version})")
    config = _field(doc, "config", dict, "a JSON object")
    profiles = _field(doc, "profiles", dict, "a JSON object")
    for source, profs in profiles.items():
        if not isinstance(profs, dict):
            raise ValueError(f"profiles.{source}: must be a JSON object (got {type(profs).__name__})")
    local = sorted(LOCAL_ONLY_KEYS & set(config))
    if local:
        raise ValueError(f"config: local-only keys cannot be pushed (got {', '.join(local)})")
    digest = _field(doc, "sha256", str, "64 hex digits")
    if digest != config_digest(config, profiles):
        raise ValueError(f"sha256: does not match the config (got {digest:.64})")
    return ConfigPush(
        version=version,
        sha256=digest,
        config=config,
        profiles=profiles,
        issued_at=_field(doc, "issued_at", int, "ms since the epoch"),
        issued_by=str(doc.get("issued_by", ""))[:200],
        reason=str(doc.get("reason", ""))[:500],
    )
