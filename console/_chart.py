"""A small server-rendered SVG line chart (no JavaScript, no external assets)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["Chart", "line_chart"]


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    points: str
    limit_y: float | None
    marker_x: float | None
    y_min: float
    y_max: float
    t_start: datetime
    t_end: datetime


def line_chart(
    rows: list[dict[str, Any]],
    time_key: str,
    value_key: str,
    limit: float | None,
    marker: datetime | None,
    width: int = 800,
    height: int = 220,
) -> Chart | None:
    pts: list[tuple[datetime, float]] = [
        (r[time_key], float(r[value_key])) for r in rows if r.get(value_key) is not None
    ]
    if len(pts) < 2:
        return None
    t0, t1 = pts[0][0], pts[-1][0]
    span = max((t1 - t0).total_seconds(), 1.0)
    values = [v for _, v in pts] + ([limit] if limit is not None else [])
    lo, hi = min(values), max(values)
    if hi == lo:
        hi, lo = hi + 1, lo - 1
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad

    def x(t: datetime) -> float:
        return round((t - t0).total_seconds() / span * width, 1)

    def y(v: float) -> float:
        return round(height - (v - lo) / (hi - lo) * height, 1)

    return Chart(
        width=width,
        height=height,
        points=" ".join(f"{x(t)},{y(v)}" for t, v in pts),
        limit_y=y(limit) if limit is not None else None,
        marker_x=x(marker) if marker is not None and t0 <= marker <= t1 else None,
        y_min=lo,
        y_max=hi,
        t_start=t0,
        t_end=t1,
    )
