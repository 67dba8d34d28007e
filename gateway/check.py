"""`check`: every device read once, each source plugin doing its part (the plugins concurrently).

Modbus devices are read one after the other on their own connections; MQTT sensors are given
`wait_s` to publish one message.
"""

from __future__ import annotations

import asyncio

from gateway.config import GatewayConfig
from gateway.sources import PLUGINS, CheckResult

__all__ = ["CheckResult", "check_all"]


async def check_all(cfg: GatewayConfig, *, wait_s: float = 10.0) -> list[CheckResult]:
    out: list[CheckResult] = []
    for part in await asyncio.gather(*(keys.plugin.check(cfg, wait_s) for keys in PLUGINS)):
        out.extend(part)
    return out
