"""`check`: read every device once (Modbus devices concurrently per link, MQTT sensors for one message)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.config import GatewayConfig, MqttSource
from gateway.sources.modbus import read_device_once
from gateway.sources.mqtt import map_message
from parkpulse.catalogue import load_catalogue
from parkpulse.settings import parse_mqtt_url

__all__ = ["CheckResult", "check_all"]


@dataclass(slots=True)
class CheckResult:
    device: str
    error: str | None = None
    latency_ms: float = 0.0
    rows: list[tuple[str, float | None, str, int, dict[str, Any] | None]] = field(default_factory=list)


async def _modbus(cfg: GatewayConfig) -> list[CheckResult]:
    out: list[CheckResult] = []
    for d in cfg.devices:
        if not d.enabled:
            continue
        plan, res = await read_device_once(cfg, d)
        r = CheckResult(d.id, res.error if res.error is None else f"{res.error_kind}: {res.error}", res.latency_ms)
        if res.error is None:
            r.rows = [(row[1], row[3], plan.units.get(row[1], ""), row[4], row[5] if len(row) > 5 else None) for row in res.rows]
        out.append(r)
    return out


async def _mqtt(src: MqttSource, wait_s: float) -> list[CheckResult]:
    import aiomqtt

    cat = load_catalogue()
    units = {m.name: m.unit for m in cat.metrics}
    cumulative = {m.name for m in cat.metrics if m.cumulative}
    limits = {m.name: (m.min, m.max) for m in cat.metrics}
    pending = {t.topic: t for t in src.topics}
    results: dict[str, CheckResult] = {}
    target = parse_mqtt_url(src.url)
    t0 = time.perf_counter()
    try:
        async with aiomqtt.Client(
            target.host, target.port, username=src.username or target.username, password=src.password or target.password
        ) as client:
            for t in src.topics:
                await client.subscribe(t.topic)

            async def listen() -> None:
                async for msg in client.messages:
                    for pattern, t in list(pending.items()):
                        if msg.topic.matches(pattern):
                            payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
                            rows, problems = map_message(
                                t, payload, now_ms=int(time.time() * 1000), counters=None, cumulative=cumulative, limits=limits
                            )
                            r = CheckResult(t.device, "; ".join(problems) if not rows else None, (time.perf_counter() - t0) * 1000)
                            r.rows = [(x[1], x[3], units.get(x[1], ""), x[4], None) for x in rows]
                            results[t.device] = r
                            del pending[pattern]
                    if not pending:
                        return

            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listen(), wait_s)
    except aiomqtt.MqttError as exc:
        return [CheckResult(t.device, f"broker {target.redacted()}: {exc}") for t in src.topics]
    for t in pending.values():
        results[t.device] = CheckResult(t.device, f"no message on {t.topic} within {wait_s:.0f} s")
    return list(results.values())


async def check_all(cfg: GatewayConfig, *, mqtt_wait_s: float = 10.0) -> list[CheckResult]:
    jobs = [_modbus(cfg)] + [_mqtt(s, mqtt_wait_s) for s in cfg.mqtt]
    out: list[CheckResult] = []
    for part in await asyncio.gather(*jobs):
        out.extend(part)
    return out
