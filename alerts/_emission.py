"""Hourly emission values per HJ 75 / HJ 76: minute validity, O2 conversion (折算), exceedance.

Pure functions: readings in, an HourResult with its evidence out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from alerts._hj212 import load_flag_tables

__all__ = ["HourResult", "MinuteEvidence", "convert_to_reference_o2", "evaluate_hour"]

_FLAG_LETTERS = load_flag_tables().letters()  # cems_flag code → HJ 212 letter, every edition


def convert_to_reference_o2(measured: float, o2_measured_pct: float, o2_ref_pct: float) -> float:
    """ρ = ρ' × (21 − O2ref) / (21 − O2measured). Raises ValueError when O2 ≥ 21 %."""
    if not o2_measured_pct < 21.0:
        raise ValueError(f"o2_measured_pct: must be below 21 % (got {o2_measured_pct})")
    return measured * (21.0 - o2_ref_pct) / (21.0 - o2_measured_pct)


@dataclass(frozen=True)
class MinuteEvidence:
    minute: datetime
    measured: float | None
    o2: float | None
    flag: str | None
    converted: float | None
    valid: bool
    reason: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "t": self.minute.isoformat(),
            "measured": self.measured,
            "o2": self.o2,
            "flag": self.flag,
            "converted": None if self.converted is None else round(self.converted, 4),
            "valid": self.valid,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class HourResult:
    hour: datetime
    valid_minutes: int
    excluded: int
    excluded_by: dict[str, int]
    minutes_present: int
    valid: bool
    avg_measured: float | None
    avg_o2: float | None
    avg_converted: float | None
    o2_ref: float
    minutes: list[MinuteEvidence] = field(default_factory=list)

    def exceeded(self, limit: float) -> bool:
        return self.valid and self.avg_converted is not None and self.avg_converted > limit


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def evaluate_hour(
    hour: datetime,
    pollutant: Iterable[tuple[datetime, float | None, int]],
    o2: Iterable[tuple[datetime, float | None, int]],
    flags: Iterable[tuple[datetime, float | None, int]],
    *,
    o2_ref: float,
    min_valid_minutes: int = 45,
    excluded_flags: Iterable[str] | None = None,
    exclude_quality_from: int = 4,
) -> HourResult:
    """Evaluate one clock hour of one pollutant.

    Readings are (ts, value, quality) within [hour, hour + 1 h). They are grouped into minutes
    (a CEMS sends 1-minute averages; faster data is averaged per minute). A minute is valid when it
    has a pollutant value and an O2 value of quality below `exclude_quality_from`, no excluded HJ 212
    flag (None: the default edition's, data/hj212_flags.yaml), and O2 < 21 %. Each valid minute is converted to the reference O2; the hour is valid with
    at least `min_valid_minutes` valid minutes and its value is the mean of the converted minutes.
    """
    tables = load_flag_tables()
    bad_flags = set(
        tables.default_excluded(tables.default_edition) if excluded_flags is None else excluded_flags
    )
    by_min: dict[datetime, dict[str, list[Any]]] = defaultdict(lambda: {"v": [], "vq": [], "o2": [], "f": []})
    for ts, v, q in pollutant:
        slot = by_min[ts.replace(second=0, microsecond=0)]
        if v is not None and q < exclude_quality_from:
            slot["v"].append(v)
        else:
            slot["vq"].append(q)
    for ts, v, q in o2:
        if v is not None and q < exclude_quality_from:
            by_min[ts.replace(second=0, microsecond=0)]["o2"].append(v)
    for ts, v, q in flags:
        if v is not None and q < exclude_quality_from:
            by_min[ts.replace(second=0, microsecond=0)]["f"].append(_FLAG_LETTERS.get(int(v), f"?{int(v)}"))
    minutes: list[MinuteEvidence] = []
    excluded_by: dict[str, int] = defaultdict(int)
    for minute in sorted(by_min):
        s = by_min[minute]
        if not s["v"] and not s["vq"]:
            continue  # only O2 / flag for this minute: no pollutant value was sent
        measured = _mean(s["v"])
        o2v = _mean(s["o2"])
        bad = [f for f in s["f"] if f in bad_flags]
        flag = bad[0] if bad else (s["f"][0] if s["f"] else None)
        reason: str | None = None
        if bad:
            reason = f"flag:{bad[0]}"
        elif measured is None:
            reason = "quality"
        elif o2v is None:
            reason = "no_o2"
        elif o2v >= 21.0:
            reason = "o2_invalid"
        converted = None
        if reason is None and measured is not None and o2v is not None:
            converted = convert_to_reference_o2(measured, o2v, o2_ref)
        else:
            excluded_by[str(reason)] += 1
        minutes.append(MinuteEvidence(minute, measured, o2v, flag, converted, reason is None, reason))
    good = [m for m in minutes if m.valid]
    valid_minutes = len(good)
    return HourResult(
        hour=hour,
        valid_minutes=valid_minutes,
        excluded=len(minutes) - valid_minutes,
        excluded_by=dict(excluded_by),
        minutes_present=len(minutes),
        valid=valid_minutes >= min_valid_minutes,
        avg_measured=_mean([m.measured for m in good if m.measured is not None]),
        avg_o2=_mean([m.o2 for m in good if m.o2 is not None]),
        avg_converted=_mean([m.converted for m in good if m.converted is not None]),
        o2_ref=o2_ref,
        minutes=minutes,
    )
