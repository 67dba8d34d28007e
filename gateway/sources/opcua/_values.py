"""One OPC UA value (a DataValue's value, status code and timestamps) -> one reading row.

No I/O: the subscription handler, the poller and `check` all go through `to_row`, and the test
cases in testcases.yaml call it directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from gateway.counters import CounterTracker
from gateway.sources.opcua._config import OpcuaNode
from parkpulse.catalogue import Metric
from parkpulse.wire import Quality

__all__ = ["NodeSpec", "Outcome", "status_quality", "to_row"]

GOOD, UNCERTAIN, BAD = Quality.GOOD, Quality.UNCERTAIN, Quality.BAD

# the top two bits of a StatusCode: 00 good, 01 uncertain, 10 (and 11) bad
_SEVERITY_UNCERTAIN = 0b01


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A configured node with what its catalogue metric says about it."""

    device: str
    node: OpcuaNode
    cumulative: bool
    limits: tuple[float | None, float | None]
    states: dict[int, str] | None
    value_map: dict[int, int] | None

    @classmethod
    def of(cls, device: str, node: OpcuaNode, metric: Metric) -> NodeSpec:
        vmap: dict[int, int] | None = None
        if node.value_map is not None and metric.states:
            by_name = {v: c for c, v in metric.states.items()}
            vmap = {k: (v if isinstance(v, int) else by_name[v]) for k, v in node.value_map.items()}
        return cls(device, node, metric.cumulative, (metric.min, metric.max), metric.states, vmap)


@dataclass(slots=True)
class Outcome:
    row: list[Any]
    problem: str | None = None
    kind: Literal["exception", "decode"] | None = None
    """exception: the server reported a bad status for the node; decode: its value is unusable."""


def status_quality(status: int) -> Quality:
    severity = (status >> 30) & 0b11
    if severity == 0:
        return GOOD
    return UNCERTAIN if severity == _SEVERITY_UNCERTAIN else BAD


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _timestamp(
    source_ms: int | None, server_ms: int | None, now_ms: int, max_skew_s: float
) -> tuple[int, bool]:
    """The read time: the source's, else the server's, else arrival; (ts, whether a clock was off)."""
    for ts in (source_ms, server_ms):
        if ts is None:
            continue
        if abs(ts - now_ms) <= max_skew_s * 1000:
            return ts, False
        return now_ms, True
    return now_ms, False


def to_row(
    spec: NodeSpec,
    value: Any,
    *,
    status: int,
    source_ms: int | None,
    server_ms: int | None,
    now_ms: int,
    max_skew_s: float,
    counters: CounterTracker | None,
) -> Outcome:
    """The row for one value of one node, and the problem found (naming the node and the value)."""
    n = spec.node
    ts, skewed = _timestamp(source_ms, server_ms, now_ms, max_skew_s)
    q = status_quality(status)
    if q == BAD:
        return Outcome(
            [spec.device, n.metric, ts, None, BAD],
            f"{n.address}: bad status 0x{status:08X} from the server",
            "exception",
        )
    raw = _numeric(value)
    if raw is None:
        return Outcome(
            [spec.device, n.metric, ts, None, BAD],
            f"{n.address}: not a finite number (got {value!r})",
            "decode",
        )
    if skewed:
        q = max(q, UNCERTAIN)
    if spec.value_map is not None:
        code = int(raw) if raw.is_integer() else None
        if code is None or code not in spec.value_map:
            return Outcome(
                [spec.device, n.metric, ts, None, BAD],
                f"{n.address}: state {value!r} is not in value_map (known: {sorted(spec.value_map)})",
                "decode",
            )
        v = float(spec.value_map[code])
    else:
        v = raw * n.scale
        if spec.states is not None and not (v.is_integer() and int(v) in spec.states):
            q = max(q, UNCERTAIN)
    lo, hi = spec.limits
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        q = max(q, UNCERTAIN)
    if spec.cumulative and counters is not None:
        ev = counters.observe(spec.device, n.metric, ts, v)
        if ev is not None:
            return Outcome([spec.device, n.metric, ts, v, int(q), ev])
    return Outcome([spec.device, n.metric, ts, v, int(q)])
