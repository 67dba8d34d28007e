"""Device registry cache for the stream evaluator (v_devices)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

__all__ = ["DeviceInfo", "DeviceRegistry"]


@dataclass(frozen=True)
class DeviceInfo:
    device_pk: int
    park_id: str
    firm_id: str
    gateway_id: str
    device_id: str
    kind: str
    source_type: str | None
    poll_interval_s: float | None
    rated_power_kw: float | None


class DeviceRegistry:
    def __init__(self, refresh_s: float = 30.0, miss_refresh_s: float = 2.0) -> None:
        self.refresh_s = refresh_s
        self.miss_refresh_s = miss_refresh_s
        self._by_key: dict[tuple[str, str], DeviceInfo] = {}
        self._loaded = -1e18

    def get(self, gateway: str, device: str) -> DeviceInfo | None:
        return self._by_key.get((gateway, device))

    def all(self) -> list[DeviceInfo]:
        return list(self._by_key.values())

    def needs_refresh(self, missed: bool = False) -> bool:
        age = time.monotonic() - self._loaded
        return age >= (self.miss_refresh_s if missed else self.refresh_s)

    async def load(self, conn: psycopg.AsyncConnection) -> None:
        cur = await conn.execute(
            "SELECT device_pk, park_id, firm_id, gateway_id, device_id, kind, source_type, poll_interval_s, "
            "rated_power_kw FROM v_devices WHERE enabled"
        )
        rows = await cur.fetchall()
        self._by_key = {(r[3], r[4]): DeviceInfo(*r) for r in rows}
        self._loaded = time.monotonic()
