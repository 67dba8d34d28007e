"""Registry cache: (gateway, device) → device_pk and metric name → metric_id, with the binary COPY
row prefix (field count, device_pk, metric_id, ts length) precomputed per (device, metric), and
the earliest reading time each device may report (its registration date less the history window)."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import NamedTuple

import psycopg

__all__ = ["RegistryCache", "RegistryData", "load_registry"]

_PREFIX = struct.Struct(">hiiihi")  # 5 fields; int4 device_pk; int2 metric_id; then the int8 ts length


class RegistryData(NamedTuple):
    devices: dict[str, dict[str, int]]  # gateway → device → device_pk
    metrics: dict[str, int]  # metric name → metric_id
    floors: dict[str, dict[str, int]]  # gateway → device → earliest accepted reading time, epoch ms


class RegistryCache:
    """Reloaded every `refresh_s`, and on a miss at most every `miss_refresh_s`.

    `load` is called with no argument and returns (devices, metrics); it raises psycopg errors
    when the database is unreachable, and the caller retries: a miss during an outage must not
    turn a good reading into a dead letter.
    """

    def __init__(
        self,
        load: Callable[[], RegistryData],
        refresh_s: float = 60.0,
        miss_refresh_s: float = 1.0,
        on_refresh: Callable[[], None] | None = None,
    ) -> None:
        self._load = load
        self.refresh_s = refresh_s
        self.miss_refresh_s = miss_refresh_s
        self._on_refresh = on_refresh
        self.devices: dict[str, dict[str, int]] = {}
        self.metrics: dict[str, int] = {}
        self.floors: dict[str, dict[str, int]] = {}
        self._floor_max: dict[str, int] = {}
        self._prefixes: dict[str, dict[tuple[str, str], bytes]] = {}
        self.loaded_at = 0.0

    def refresh(self) -> None:
        devices, metrics, floors = self._load()
        self.devices, self.metrics, self.floors = devices, metrics, floors
        self._floor_max = {gw: max(f.values()) for gw, f in floors.items() if f}
        self._prefixes = {}
        self.loaded_at = time.monotonic()
        if self._on_refresh:
            self._on_refresh()

    def maybe_refresh(self) -> None:
        if time.monotonic() - self.loaded_at >= self.refresh_s:
            self.refresh()

    def prefixes(self, gateway: str) -> dict[tuple[str, str], bytes]:
        """The per-gateway prefix map used by the hot loop (filled lazily by resolve)."""
        p = self._prefixes.get(gateway)
        if p is None:
            p = self._prefixes[gateway] = {}
        return p

    def floor_max(self, gateway: str) -> int:
        """The latest of the gateway's device floors: a reading at or after it passes every device's floor."""
        return self._floor_max.get(gateway, -(1 << 62))

    def knows_gateway(self, gateway: str) -> bool:
        if gateway in self.devices:
            return True
        self._refresh_on_miss()
        return gateway in self.devices

    def resolve(self, gateway: str, device: str, metric: str) -> bytes | tuple[str, str]:
        """The COPY prefix, or (field, reason) when the device or metric is unknown."""
        for attempt in (0, 1):
            pk = self.devices.get(gateway, {}).get(device)
            mid = self.metrics.get(metric)
            if pk is not None and mid is not None:
                b = _PREFIX.pack(5, 4, pk, 2, mid, 8)
                self.prefixes(gateway)[(device, metric)] = b
                return b
            if attempt == 0 and not self._refresh_on_miss():
                break
        if self.devices.get(gateway, {}).get(device) is None:
            return "device", f"unknown device {device!r} on gateway {gateway!r} (not in the registry)"
        return "metric", f"unknown metric {metric!r} (not in the catalogue)"

    def _refresh_on_miss(self) -> bool:
        if time.monotonic() - self.loaded_at < self.miss_refresh_s:
            return False
        self.refresh()
        return True


def load_registry(conn: psycopg.Connection, history_before_registration_s: float) -> RegistryData:
    """Read the registry. A device's floor is its registration time less the history window."""
    devices: dict[str, dict[str, int]] = {}
    floors: dict[str, dict[str, int]] = {}
    with conn.cursor() as cur:
        cur.execute(
            "SELECT gateway_id, device_id, device_pk, "
            "floor(extract(epoch FROM registered_at) * 1000 - %s::float8 * 1000)::bigint FROM devices WHERE enabled",
            (float(history_before_registration_s),),
        )
        for gw, dev, pk, floor_ms in cur:
            devices.setdefault(gw, {})[dev] = pk
            floors.setdefault(gw, {})[dev] = floor_ms
        cur.execute("SELECT name, metric_id FROM metrics")
        metrics = {name: mid for name, mid in cur}
    conn.rollback()
    return RegistryData(devices, metrics, floors)
