"""`parkpulse-gateway check` for the `mqtt` source: wait for one message of every topic."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiomqtt

from gateway.sources._plugin import CheckResult
from gateway.sources.mqtt._config import MqttKeys, MqttSource
from gateway.sources.mqtt._listener import map_message
from parkpulse.catalogue import load_catalogue
from parkpulse.settings import parse_mqtt_url

__all__ = ["check"]


async def check(cfg: MqttKeys, wait_s: float) -> list[CheckResult]:
    """Every topic of every entry: its first message mapped, or why none came within `wait_s` (entries concurrently)."""
    out: list[CheckResult] = []
    for part in await asyncio.gather(*(_source(s, wait_s) for s in cfg.mqtt)):
        out.extend(part)
    return out


async def _source(src: MqttSource, wait_s: float) -> list[CheckResult]:
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
            target.host,
            target.port,
            username=src.username or target.username,
            password=src.password or target.password,
        ) as client:
            for t in src.topics:
                await client.subscribe(t.topic)

            async def listen() -> None:
                async for msg in client.messages:
                    for pattern, t in list(pending.items()):
                        if msg.topic.matches(pattern):
                            payload = (
                                msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
                            )
                            rows, problems = map_message(
                                t,
                                payload,
                                now_ms=int(time.time() * 1000),
                                counters=None,
                                cumulative=cumulative,
                                limits=limits,
                            )
                            r = CheckResult(
                                t.device,
                                "; ".join(problems) if not rows else None,
                                (time.perf_counter() - t0) * 1000,
                            )
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
