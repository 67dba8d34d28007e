"""绿色工厂 (GB/T 36132, 2018 and 2025 editions): veto on basic requirements, scored items, verdict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rules._checks import run_check
from rules._ruleset import GreenEdition, GreenItem

__all__ = ["GreenInputs", "GreenResult", "evaluate_green"]


@dataclass
class GreenInputs:
    firm_id: str
    industry: str | None
    declared: Mapping[str, object] = field(default_factory=dict)
    indicators: Mapping[str, float | None] = field(default_factory=dict)
    how: Mapping[str, str] = field(default_factory=dict)


@dataclass
class GreenResult:
    verdict: str
    score: float | None
    detail: dict[str, object]


def _declared_points(item: GreenItem, raw: object) -> tuple[float | None, str]:
    assert item.points is not None
    full = item.points.value
    if isinstance(raw, bool):
        return (full if raw else 0.0), f"declared {'met' if raw else 'not met'}"
    if isinstance(raw, int | float):
        return max(0.0, min(full, float(raw))), f"declared {raw} of {full:g} points"
    return None, "not declared"


def _thresholds(item: GreenItem, industry: str | None) -> dict[str, float] | None:
    assert item.thresholds is not None
    raw = item.thresholds.by_industry.get(industry or "", item.thresholds.default)
    if raw is None:
        return None
    return dict(raw) if isinstance(raw, dict) else {"threshold": float(raw)}


def evaluate_green(edition: GreenEdition, g: GreenInputs) -> GreenResult:
    veto: list[dict[str, object]] = []
    items: list[dict[str, object]] = []
    score = 0.0
    missing_points = 0.0
    for it in edition.items:
        raw = g.declared.get(it.id)
        if it.kind == "veto":
            ok = raw if isinstance(raw, bool) else None
            veto.append({"item": it.id, "zh": it.zh, "met": ok, "source": it.source})
            continue
        assert it.points is not None
        full = it.points.value
        entry: dict[str, object] = {"item": it.id, "zh": it.zh, "area": it.area, "max_points": full}
        pts: float | None
        if it.kind == "computed":
            value = g.indicators.get(it.indicator or "")
            th = _thresholds(it, g.industry)
            entry.update({"indicator": it.indicator, "value": value, "how": g.how.get(it.indicator or "")})
            if value is not None and th is not None:
                out = run_check(it.check or "", value, th)
                pts = out.fraction * full
                entry.update(
                    {
                        "check": it.check,
                        "thresholds": th,
                        "rule": out.rule,
                        "thresholds_source": it.thresholds.source if it.thresholds else None,
                    }
                )
            else:
                pts, why = _declared_points(it, raw)
                reason = (
                    "no threshold configured for this industry"
                    if th is None
                    else "not measurable from telemetry"
                )
                entry["note"] = f"{reason}; {why}"
        else:
            pts, why = _declared_points(it, raw)
            entry["note"] = why
        entry["points"] = pts
        if pts is None:
            missing_points += full
        else:
            score += pts
        items.append(entry)
    pass_score = edition.pass_score.value
    vetoed = [v["item"] for v in veto if v["met"] is False]
    unknown = [v["item"] for v in veto if v["met"] is None]
    if vetoed:
        verdict, why = "fail", f"basic requirement(s) not met (veto): {', '.join(map(str, vetoed))}"
    elif unknown:
        verdict, why = (
            "insufficient_data",
            f"basic requirement(s) not declared: {', '.join(map(str, unknown))}",
        )
    elif score >= pass_score:
        verdict, why = "pass", f"score {score:.1f} >= pass score {pass_score:g}"
    elif score + missing_points >= pass_score:
        verdict, why = (
            "insufficient_data",
            (
                f"score {score:.1f} < {pass_score:g} with {missing_points:g} points "
                "undetermined (not declared, not measurable)"
            ),
        )
    else:
        verdict, why = "fail", f"score {score:.1f} < pass score {pass_score:g}"
    detail: dict[str, object] = {
        "edition": edition.edition,
        "standard": edition.standard,
        "version": edition.version,
        "pass_score": edition.pass_score.cite(),
        "veto": veto,
        "items": items,
        "score": score,
        "undetermined_points": missing_points,
        "reason": why,
    }
    return GreenResult(verdict, score, detail)
