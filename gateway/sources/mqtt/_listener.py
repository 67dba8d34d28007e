"""Subscribe to sensors' topics (aiomqtt), map JSON fields to catalogue metrics, reconnect with backoff."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import datetime
from typing import Any

import aiomqtt
import orjson

from gateway.counters import CounterTracker
from gateway.sources._plugin import Source, SourceContext
from gateway.sources.mqtt._config import MqttKeys, MqttSource, MqttTopic
from gateway.stats import DeviceStats
from parkpulse.catalogue import load_catalogue
from parkpulse.settings import parse_mqtt_url
from parkpulse.wire import Quality

__all__ = ["MqttListener", "build", "map_message", "summary"]

log = logging.getLogger("parkpulse.gateway.mqtt")
GOOD, UNCERTAIN, BAD = (
    Quality.GOOD,
    Quality.UNCERTAIN,
    Quality.BAD,
)  # the kernel's codes, local for the hot loop


def _ts_ms(raw: Any, unit: str) -> int | None:
    try:
        if unit == "iso":
            return int(datetime.fromisoformat(str(raw).replace("Z", "+00:00")).timestamp() * 1000)
        v = float(raw)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v):
        return None
    return int(v * 1000) if unit == "s" else int(v)


def map_message(
    t: MqttTopic,
    payload: bytes,
    *,
    now_ms: int,
    counters: CounterTracker | None,
    cumulative: set[str],
    limits: dict[str, tuple[float | None, float | None]],
) -> tuple[list[list[Any]], list[str]]:
    """Rows for one sensor message and the problems found (field path and value)."""
    problems: list[str] = []
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return [], [f"payload: not JSON ({exc})"]
    if not isinstance(doc, dict):
        return [], [f"payload: must be a JSON object (got {type(doc).__name__})"]
    ts = now_ms
    quality_ts = GOOD
    if t.timestamp_field:
        raw = doc.get(t.timestamp_field)
        got = _ts_ms(raw, t.timestamp_unit) if raw is not None else None
        if got is None:
            problems.append(f"{t.timestamp_field}: no usable timestamp (got {raw!r}); arrival time used")
            quality_ts = UNCERTAIN
        elif abs(got - now_ms) > t.max_clock_skew_s * 1000:
            problems.append(
                f"{t.timestamp_field}: sensor clock off by {(got - now_ms) / 1000:.0f} s; arrival time used"
            )
            quality_ts = UNCERTAIN
        else:
            ts = got
    rows: list[list[Any]] = []
    for fld, metric in t.fields.items():
        if fld not in doc:
            continue
        v = doc[fld]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            problems.append(f"{fld}: not a finite number (got {v!r})")
            rows.append([t.device, metric, ts, None, BAD])
            continue
        value = float(v)
        lo, hi = limits.get(metric, (None, None))
        q = quality_ts
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            q = max(q, UNCERTAIN)
        if metric in cumulative and counters is not None:
            ev = counters.observe(t.device, metric, ts, value)
            if ev is not None:
                rows.append([t.device, metric, ts, value, q, ev])
                continue
        rows.append([t.device, metric, ts, value, q])
    return rows, problems


class MqttListener:
    """One broker connection subscribed to every topic of one `mqtt` source entry."""

    def __init__(self, src: MqttSource, ctx: SourceContext) -> None:
        self.src = src
        self.name = f"mqtt:{src.name}"
        self.ctx = ctx
        cat = load_catalogue()
        self._cumulative = {m.name for m in cat.metrics if m.cumulative}
        self._limits = {m.name: (m.min, m.max) for m in cat.metrics}
        self._by_topic = {t.topic: t for t in src.topics}
        self._stats = {t.device: DeviceStats(t.device, "mqtt", 0.0) for t in src.topics}
        self.connected = False

    def stats(self) -> list[DeviceStats]:
        return list(self._stats.values())

    def _match(self, topic: str) -> MqttTopic | None:
        t = self._by_topic.get(topic)
        if t is not None:
            return t
        for pattern, cand in self._by_topic.items():
            if aiomqtt.Topic(topic).matches(pattern):
                return cand
        return None

    async def run(self) -> None:
        target = parse_mqtt_url(self.src.url)
        delay = 1.0
        while True:
            try:
                async with aiomqtt.Client(
                    target.host,
                    target.port,
                    username=self.src.username or target.username,
                    password=self.src.password or target.password,
                    identifier=None,
                ) as client:
                    for t in self.src.topics:
                        await client.subscribe(t.topic, qos=self.src.qos)
                    self.connected = True
                    delay = 1.0
                    async for msg in client.messages:
                        self._handle(
                            str(msg.topic),
                            bytes(msg.payload)
                            if isinstance(msg.payload, bytes | bytearray)
                            else str(msg.payload).encode(),
                        )
            except aiomqtt.MqttError as exc:
                self.connected = False
                log.warning("mqtt source %s: %s; reconnecting in %.0f s", self.src.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    def _handle(self, topic: str, payload: bytes) -> None:
        t = self._match(topic)
        if t is None:
            return
        st = self._stats[t.device]
        st.polls += 1
        now = int(time.time() * 1000)
        rows, problems = map_message(
            t,
            payload,
            now_ms=now,
            counters=self.ctx.counters,
            cumulative=self._cumulative,
            limits=self._limits,
        )
        if problems:
            st.decode_errors += 1
            st.last_error = "; ".join(problems)
            log.warning("mqtt %s (%s): %s", topic, t.device, st.last_error)
        if rows:
            st.ok += 1
            st.consecutive_failures = 0
            st.last_ok_ms = now
            st.readings += len(rows)
            self.ctx.emit(rows)
        else:
            st.consecutive_failures += 1


def build(cfg: MqttKeys, ctx: SourceContext) -> list[Source]:
    """One listener per `mqtt` entry (broker connection)."""
    return [MqttListener(s, ctx) for s in cfg.mqtt]


def summary(cfg: MqttKeys) -> str:
    return f"{sum(len(s.topics) for s in cfg.mqtt)} MQTT topic(s)"
