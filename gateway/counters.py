"""Cumulative counters: sent as read, with every step that is not a plain rise flagged.

Detected steps (the wire's counter event, see parkpulse.wire.CounterEvent):
- rollover: an unsigned register wrapped past its top (correction = the register span)
- reset: the counter restarted near zero (correction = prev)
- replaced: the counter fell to another non-zero value, i.e. a new meter (correction = prev - value)
- jump: a rise larger than the rated power could produce in the elapsed time (correction = -(value - prev))
Consumption across a step is then (value - prev) + correction, never negative or huge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CounterState", "CounterTracker", "detect_step"]

# a rise may exceed rated power × time by this factor before it is called implausible
JUMP_FACTOR = 1.5
_ENERGY_PER_KW = {"elec_import_kwh", "elec_export_kwh", "elec_reactive_kvarh"}


@dataclass(slots=True)
class CounterState:
    value: float
    ts_ms: int


def detect_step(
    prev: float,
    value: float,
    *,
    dt_s: float,
    span: float | None = None,
    max_rate_per_h: float | None = None,
) -> dict[str, Any] | None:
    """The counter event for a step from `prev` to `value`, or None for a plausible rise."""
    if value >= prev:
        if max_rate_per_h is not None and dt_s >= 0:
            allowed = max_rate_per_h * JUMP_FACTOR * max(dt_s, 1.0) / 3600.0 + 1e-6 * max(abs(prev), 1.0)
            if value - prev > allowed:
                return {"event": "jump", "prev": prev, "correction": -(value - prev)}
        return None
    if span is not None and prev > 0.5 * span and value < 0.5 * span:
        rolled = value - prev + span
        if max_rate_per_h is None or rolled <= max_rate_per_h * JUMP_FACTOR * max(dt_s, 1.0) / 3600.0 + 1.0:
            return {"event": "rollover", "prev": prev, "correction": span}
    small = 0.001 * prev
    if max_rate_per_h is not None:
        small = max(small, max_rate_per_h * JUMP_FACTOR * max(dt_s, 1.0) / 3600.0)
    if value <= max(small, 1e-9):
        return {"event": "reset", "prev": prev, "correction": prev}
    return {"event": "replaced", "prev": prev, "correction": prev - value}


class CounterTracker:
    """Last value per (device, metric); flags steps. State can be saved and restored (spool)."""

    def __init__(self, state: dict[tuple[str, str], CounterState] | None = None) -> None:
        self.state: dict[tuple[str, str], CounterState] = dict(state or {})
        self.dirty: set[tuple[str, str]] = set()
        self.events = 0

    def observe(
        self,
        device: str,
        metric: str,
        ts_ms: int,
        value: float,
        *,
        span: float | None = None,
        rated_power_kw: float | None = None,
    ) -> dict[str, Any] | None:
        key = (device, metric)
        prev = self.state.get(key)
        self.state[key] = CounterState(value, ts_ms)
        self.dirty.add(key)
        if prev is None:
            return None
        rate = rated_power_kw if (rated_power_kw and metric in _ENERGY_PER_KW) else None
        ev = detect_step(
            prev.value, value, dt_s=(ts_ms - prev.ts_ms) / 1000.0, span=span, max_rate_per_h=rate
        )
        if ev is not None:
            self.events += 1
        return ev

    def take_dirty(self) -> list[tuple[str, str, float, int]]:
        out = [(d, m, self.state[(d, m)].value, self.state[(d, m)].ts_ms) for d, m in self.dirty]
        self.dirty.clear()
        return out
