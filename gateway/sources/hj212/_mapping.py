"""A data packet's CP → readings of catalogue metrics, plus the device-minute's `cems_flag`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.counters import CounterTracker
from gateway.sources.hj212._packet import Packet, PacketError
from gateway.sources.hj212._tables import EditionTable
from parkpulse.wire import Quality

__all__ = ["DATA_KINDS", "Mapped", "MetricInfo", "data_time_ms", "map_data"]

GOOD, UNCERTAIN, BAD = int(Quality.GOOD), int(Quality.UNCERTAIN), int(Quality.BAD)

# per kind of data: the CP field of the measured value, of the converted (Zs) value
DATA_KINDS: dict[str, tuple[str, str]] = {
    "real_time": ("Rtd", "ZsRtd"),
    "minute": ("Avg", "ZsAvg"),
    "hour": ("Avg", "ZsAvg"),
    "day": ("Avg", "ZsAvg"),
}


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """What the mapping needs of the catalogue: cumulative metrics and plausible ranges."""

    cumulative: frozenset[str]
    limits: dict[str, tuple[float | None, float | None]]


@dataclass(slots=True)
class Mapped:
    ts_ms: int
    rows: list[list[Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unmapped: set[str] = field(default_factory=set)
    flag: str | None = None


def data_time_ms(p: Packet, tz: ZoneInfo) -> int:
    raw = p.cp_value("DataTime")
    if raw is None:
        raise PacketError("CP.DataTime", None, "DataTime missing")
    if len(raw) != 14 or not raw.isdigit():
        raise PacketError("CP.DataTime", raw, "DataTime is not YYYYMMDDhhmmss")
    try:
        dt = datetime.strptime(raw, "%Y%m%d%H%M%S").replace(tzinfo=tz)
    except ValueError:
        raise PacketError("CP.DataTime", raw, "DataTime is not a valid time") from None
    return int(dt.timestamp() * 1000)


def _number(raw: str) -> float | None:
    try:
        v = float(raw)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _value_row(
    device: str, metric: str, ts: int, raw: str, factor: float, info: MetricInfo, key: str, out: Mapped
) -> list[Any]:
    v = _number(raw)
    if v is None:
        out.problems.append(f"CP.{key}: not a finite number (got {raw!r})")
        return [device, metric, ts, None, BAD]
    v *= factor
    lo, hi = info.limits.get(metric, (None, None))
    q = UNCERTAIN if (lo is not None and v < lo) or (hi is not None and v > hi) else GOOD
    return [device, metric, ts, v, q]


def map_data(
    p: Packet,
    table: EditionTable,
    *,
    device: str,
    kind: str,
    tz: ZoneInfo,
    info: MetricInfo,
    counters: CounterTracker | None,
) -> Mapped:
    """Readings of one data packet (CN 2011/2051/2061/2031). Each pollutant's quality is the worse
    of its value's and its flag's; `cems_flag` is the most severe flag of the mapped pollutants."""
    ts = data_time_ms(p, tz)
    out = Mapped(ts)
    measured_f, converted_f = DATA_KINDS[kind]
    flags: dict[str, str] = {}
    values: list[tuple[str, list[Any]]] = []  # (pollutant code, row)
    for group in p.cp:
        for key, raw in group:
            code, dash, fld = key.partition("-")
            if not dash:
                continue
            entry = table.metric_entry(code)
            if entry is None:
                out.unmapped.add(code)
                continue
            if fld == "Flag":
                flags[code] = raw
            elif fld == measured_f:
                values.append(
                    (code, _value_row(device, entry.measured, ts, raw, entry.factor, info, key, out))
                )
            elif fld == converted_f and entry.converted is not None:
                values.append((code, _value_row(device, entry.converted, ts, raw, 1.0, info, key, out)))
    worst: tuple[int, str] | None = None
    for code, letter in flags.items():
        fe = table.flags.get(letter)
        if fe is None:
            out.problems.append(f"CP.{code}-Flag: not a data flag of {table.standard} (got {letter!r})")
            continue
        if worst is None or fe.severity > worst[0]:
            worst = (fe.severity, letter)
    for code, row in values:
        fe = table.flags.get(flags.get(code, "N"))
        q = fe.quality_code if fe is not None else UNCERTAIN
        row[4] = max(row[4], q)
        metric = row[1]
        if metric in info.cumulative and counters is not None and row[3] is not None:
            ev = counters.observe(device, metric, ts, row[3])
            if ev is not None:
                row.append(ev)
        out.rows.append(row)
    if worst is not None:
        out.flag = worst[1]
        out.rows.append([device, "cems_flag", ts, float(table.flags[worst[1]].cems_flag), GOOD])
    return out
