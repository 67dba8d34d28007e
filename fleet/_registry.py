"""The registry follows a gateway's desired configuration: a device the config adds is registered
(ingest stores readings only of registered devices), one it disables or drops is marked out of
service (so data-gap alerts do not expect it), its poll interval kept current.

Only the Modbus devices and DL/T 645 meters of a config are handled (the "add a meter from a
profile" case); other sources' devices are registered through the park file. A new device is
registered as an equipment sub-meter (meter_level 3), never as a firm boundary meter: the park
file (`parkpulse registry import`) says otherwise where it is one, so nothing is counted twice in
a firm's energy.
"""

from __future__ import annotations

from typing import Any

import psycopg

__all__ = ["NEW_METER_LEVEL", "managed_devices", "sync_registry"]

NEW_METER_LEVEL = 3

_UPSERT = """
INSERT INTO devices (gateway_id, device_id, kind, profile, meter_level, poll_interval_s, rated_power_kw, enabled)
VALUES (%s, %s, %s, %s, CASE WHEN %s = 'meter' THEN %s END, %s, %s, %s)
ON CONFLICT (gateway_id, device_id) DO UPDATE SET
  poll_interval_s = excluded.poll_interval_s, enabled = excluded.enabled, updated_at = now()
WHERE (devices.poll_interval_s, devices.enabled) IS DISTINCT FROM (excluded.poll_interval_s, excluded.enabled)"""


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def managed_devices(
    config: dict[str, Any], profiles: dict[str, dict[str, Any]]
) -> dict[str, tuple[Any, ...]]:
    """device id -> (kind, profile, poll interval, rated power, enabled) of the config's Modbus devices and DL/T 645 meters."""
    out: dict[str, tuple[Any, ...]] = {}
    for key, source in (("devices", "modbus"), ("dlt645_meters", "dlt645")):
        entries = config.get(key)
        for d in entries if isinstance(entries, list) else []:
            if not isinstance(d, dict) or not isinstance(d.get("id"), str):
                continue
            prof = (profiles.get(source) or {}).get(str(d.get("profile")), {})
            kind = prof.get("kind", "meter") if source == "modbus" else "meter"
            out[d["id"]] = (
                kind,
                d.get("profile"),
                _num(d.get("interval_s")),
                _num(d.get("rated_power_kw")),
                d.get("enabled", True) is not False,
            )
    return out


def sync_registry(
    cur: psycopg.Cursor[Any],
    gateway_id: str,
    new: tuple[dict[str, Any], dict[str, dict[str, Any]]],
    old: tuple[dict[str, Any], dict[str, dict[str, Any]]] | None,
) -> None:
    """Register the devices of `new` (config, profiles), keep interval and in-service mark current,
    and mark out of service the devices `old` had that `new` dropped."""
    now = managed_devices(*new)
    for device_id in sorted(now):
        kind, profile, interval, rated, enabled = now[device_id]
        cur.execute(
            _UPSERT, (gateway_id, device_id, kind, profile, kind, NEW_METER_LEVEL, interval, rated, enabled)
        )
    dropped = sorted(set(managed_devices(*old)) - set(now)) if old is not None else []
    if dropped:
        cur.execute(
            "UPDATE devices SET enabled = false, updated_at = now() WHERE gateway_id = %s AND device_id = ANY(%s) AND enabled",
            (gateway_id, dropped),
        )
