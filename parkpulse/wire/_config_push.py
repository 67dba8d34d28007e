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

Pushes are signed with the platform's Ed25519 key (`sig`, over `signed_message()`: gateway,
version, digest and issue time); a managed gateway holds the public key, provisioned at install,
and refuses an unsigned push, a bad signature, a push for another gateway and a stale one (issued
more than `max_age_s` ago, or in the future). The publisher re-signs the retained message with a
fresh issue time when it starts and daily, so a gateway back from a long outage still accepts it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

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
    "signed_message",
]

CONFIG_MAX_BYTES = 1_000_000
"""A pushed configuration larger than this is refused on both sides (1 MB: hundreds of devices)."""

LOCAL_ONLY_KEYS = frozenset({"gateway", "park", "firm", "uplink", "spool", "http", "managed"})
"""Top-level keys of a gateway file a push may never carry."""


MAX_CLOCK_SKEW_MS = 300_000
"""A push issued this far in the future (gateway clock behind) is still accepted: 5 minutes."""


def signed_message(gateway: str, version: int, sha256: str, issued_at: int) -> bytes:
    """What the platform signs: the push's identity, not its bytes (JSON need not be canonical)."""
    return f"parkpulse config push v1\n{gateway}\n{version}\n{sha256}\n{issued_at}".encode()


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
    signing_key: Ed25519PrivateKey | None = None,
) -> bytes:
    """The retained message for `gateway`; `profiles` maps a source name ("modbus", "dlt645") to
    {profile name: profile document}. Raises ValueError for a local-only key or an oversized document."""
    local = sorted(LOCAL_ONLY_KEYS & set(config))
    if local:
        raise ValueError(f"config: local-only keys cannot be pushed (got {', '.join(local)})")
    profiles = profiles or {}
    digest = config_digest(config, profiles)
    issued_at = int(time.time() * 1000) if now_ms is None else now_ms
    doc: dict[str, Any] = {
        "v": WIRE_VERSION,
        "gateway": gateway,
        "version": version,
        "sha256": digest,
        "issued_at": issued_at,
        "issued_by": issued_by,
        "reason": reason,
        "config": config,
        "profiles": profiles,
    }
    if signing_key is not None:
        sig = signing_key.sign(signed_message(gateway, version, digest, issued_at))
        doc["sig"] = base64.b64encode(sig).decode()
    body = orjson.dumps(doc)
    if len(body) > CONFIG_MAX_BYTES:
        raise ValueError(f"config: {len(body)} bytes, more than {CONFIG_MAX_BYTES}")
    return body


def _field(doc: dict[str, Any], key: str, kind: type, what: str) -> Any:
    v = doc.get(key)
    if not isinstance(v, kind) or isinstance(v, bool):
        raise ValueError(f"{key}: must be {what} (got {v!r:.80})")
    return v


def _check_signature(
    doc: dict[str, Any], gateway: str, version: int, digest: str, verify_key: Ed25519PublicKey
) -> None:
    sig = doc.get("sig")
    if not isinstance(sig, str):
        raise ValueError(f"sig: a signed push is required (got {sig!r:.40})")
    try:
        raw = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"sig: not base64 (got {sig:.40})") from None
    try:
        verify_key.verify(raw, signed_message(gateway, version, digest, doc["issued_at"]))
    except InvalidSignature:
        raise ValueError("sig: does not verify with the platform's key (forged or altered)") from None


def _check_fresh(issued_at: int, max_age_s: float, now_ms: int | None) -> None:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if issued_at > now + MAX_CLOCK_SKEW_MS:
        raise ValueError(f"issued_at: {issued_at} is in the future (now {now})")
    if now - issued_at > max_age_s * 1000:
        raise ValueError(
            f"issued_at: stale, issued {(now - issued_at) / 1000:.0f} s ago (limit {max_age_s:.0f} s)"
        )


def parse_config_push(
    payload: bytes,
    gateway: str,
    *,
    verify_key: Ed25519PublicKey | None = None,
    max_age_s: float | None = None,
    now_ms: int | None = None,
) -> ConfigPush:
    """Validate a push meant for `gateway`; ValueError names the field and the value.

    Checks the envelope, the size, the digest, the absence of local-only keys and, with
    `verify_key`, the platform's signature and, with `max_age_s`, that it is not stale; the
    config's own content is checked by the gateway's validator."""
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
    issued_at = _field(doc, "issued_at", int, "ms since the epoch")
    if verify_key is not None:
        _check_signature(doc, gateway, version, digest, verify_key)
    if max_age_s is not None:
        _check_fresh(issued_at, max_age_s, now_ms)
    return ConfigPush(
        version=version,
        sha256=digest,
        config=config,
        profiles=profiles,
        issued_at=issued_at,
        issued_by=str(doc.get("issued_by", ""))[:200],
        reason=str(doc.get("reason", ""))[:500],
    )
