"""Broker account names: a gateway's id is its MQTT user name (and, on the shipped broker, its
client id), so a gateway may not take a name of the platform's own accounts or clients."""

from __future__ import annotations

__all__ = ["RESERVED_GATEWAY_IDS", "RESERVED_ID_PREFIXES", "reserved_gateway_id"]

# The service accounts, names of the platform, of the brokers' administration and of common admin
# tools (ids are lowercase). deploy/compose/init-secrets.sh refuses the same list (a test keeps them equal).
RESERVED_GATEWAY_IDS = frozenset(
    {
        "ingest",
        "alerts",
        "rules",
        "console",
        "fleet",
        "platform",
        "parkpulse",
        "admin",
        "administrator",
        "root",
        "superuser",
        "system",
        "sys",
        "mosquitto",
        "emqx",
        "dashboard",
        "broker",
        "bridge",
        "grafana",
        "monitor",
        "anonymous",
    }
)
# Client-id prefixes of the platform's own MQTT clients (pp-ingest-…, pp-alerts-…, pp-load-…).
RESERVED_ID_PREFIXES = ("pp-",)


def reserved_gateway_id(gateway_id: str) -> str | None:
    """Why `gateway_id` cannot be a gateway (a broker account), or None."""
    if gateway_id in RESERVED_GATEWAY_IDS:
        return f"gateway id {gateway_id!r}: reserved for the platform (reserved ids: {', '.join(sorted(RESERVED_GATEWAY_IDS))})"
    for prefix in RESERVED_ID_PREFIXES:
        if gateway_id.startswith(prefix):
            return f"gateway id {gateway_id!r}: the prefix {prefix!r} is reserved for the platform's own client ids"
    return None
