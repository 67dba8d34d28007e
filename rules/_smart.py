"""智能车间: device networking, automatic data collection, OEE and energy per unit of output.

Pure functions over telemetry aggregated by the store (see rules/_store.py for the queries).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rules._checks import run_check
from rules._ruleset import RuleSet

__all__ = ["SmartResult", "SmartTelemetry", "evaluate_firm_smart", "evaluate_smart"]


@dataclass
class SmartTelemetry:
    """One workshop's (or, with workshop_id None, one firm's) telemetry over a period."""

    park_id: str
    firm_id: str
    workshop_id: str | None
    devices_registered: int = 0
    devices_networked: int = 0
    readings_n: int = 0
    readings_good: int = 0
    planned_buckets: int = 0  # 15-minute buckets whose line state is not off / planned stop
    running_buckets: int = 0  # ... and running
    bucket_hours: float = 0.25
    ideal_rate_pcs_h: float | None = None
    good: float | None = None
    reject: float | None = None
    energy_kgce: float | None = None
    prev_energy_kgce: float | None = None
    prev_good: float | None = None
    smart_declared: bool = False
    lines: int = 0


@dataclass
class SmartResult:
    verdict: str
    score: float | None
    detail: dict[str, object] = field(default_factory=dict)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def measures(t: SmartTelemetry) -> tuple[dict[str, float | None], dict[str, object]]:
    """The indicator values and how each was computed."""
    how: dict[str, object] = {}
    networking = _ratio(t.devices_networked, t.devices_registered)
    how["networking_rate"] = f"{t.devices_networked} networked / {t.devices_registered} registered devices"
    auto = _ratio(t.readings_good, t.readings_n)
    how["auto_collection_rate"] = (
        f"{t.readings_good} automatic good-quality readings / {t.readings_n} readings"
    )
    availability = _ratio(t.running_buckets, t.planned_buckets)
    running_h = t.running_buckets * t.bucket_hours
    total_out = None if t.good is None or t.reject is None else t.good + t.reject
    performance = None
    if total_out is not None and t.ideal_rate_pcs_h and running_h > 0:
        performance = min(1.0, total_out / (t.ideal_rate_pcs_h * running_h))
    quality = _ratio(t.good, total_out)
    oee = None
    if availability is not None and performance is not None and quality is not None:
        oee = availability * performance * quality
    how["oee"] = {
        "availability": availability,
        "performance": performance,
        "quality": quality,
        "formula": "availability x performance x quality",
        "availability_from": f"{t.running_buckets} running / {t.planned_buckets} planned 15-minute buckets (state at bucket end)",
        "performance_from": (
            f"{total_out} parts / ({t.ideal_rate_pcs_h} pcs/h ideal x {running_h} h running), capped at 1"
        ),
        "quality_from": f"{t.good} good / {total_out} parts",
        "lines": t.lines,
    }
    epu = _ratio(t.energy_kgce, t.good)
    prev_epu = _ratio(t.prev_energy_kgce, t.prev_good)
    change = None if epu is None or prev_epu is None or prev_epu == 0 else (epu / prev_epu - 1.0) * 100.0
    how["energy_per_unit_change_pct"] = {
        "kgce_per_unit": epu,
        "previous_kgce_per_unit": prev_epu,
        "energy_kgce": t.energy_kgce,
        "good": t.good,
        "formula": "(kgce per good part / previous period's - 1) x 100",
    }
    return (
        {
            "networking_rate": networking,
            "auto_collection_rate": auto,
            "oee": oee,
            "energy_per_unit_change_pct": change,
        },
        how,
    )


def evaluate_smart(rs: RuleSet, t: SmartTelemetry) -> SmartResult:
    values, how = measures(t)
    items: list[dict[str, object]] = []
    passed = failed = missing = 0
    for name, spec in rs.smart.indicators.items():
        params = {k: v.value for k, v in spec.params.items()}
        out = run_check(spec.check, values.get(name), params)
        items.append(
            {
                "indicator": name,
                "zh": spec.zh,
                "value": values.get(name),
                "check": spec.check,
                "params": {k: v.cite() for k, v in spec.params.items()},
                "passed": out.passed,
                "rule": out.rule,
                "how": how.get(name),
            }
        )
        if out.passed is None:
            missing += 1
        elif out.passed:
            passed += 1
        else:
            failed += 1
    n = len(items)
    score = 100.0 * passed / n if n else None
    verdict = "fail" if failed else ("insufficient_data" if missing else "pass")
    detail: dict[str, object] = {
        "rule_set": rs.smart.name,
        "version": rs.smart.version,
        "indicators": items,
        "passed": passed,
        "failed": failed,
        "no_data": missing,
        "smart_declared": t.smart_declared,
        "verdict_rule": "fail if any indicator fails; insufficient_data if any has no data",
    }
    return SmartResult(verdict, score, detail)


def evaluate_firm_smart(
    rs: RuleSet, firm: SmartTelemetry, workshops: list[tuple[str, SmartResult]]
) -> SmartResult:
    """Firm level: firm-wide indicators, and smart-transformed when enough workshops pass."""
    base = evaluate_smart(rs, firm)
    need = int(rs.smart.firm.min_passing_workshops.value)
    passing = [w for w, r in workshops if r.verdict == "pass"]
    if len(passing) >= need and need > 0:
        verdict = "pass"
    elif any(r.verdict == "insufficient_data" for _, r in workshops) or not workshops:
        verdict = "insufficient_data" if base.verdict != "fail" or not workshops else "fail"
    else:
        verdict = "fail"
    detail = {
        **base.detail,
        "workshops": {w: r.verdict for w, r in workshops},
        "passing_workshops": passing,
        "min_passing_workshops": rs.smart.firm.min_passing_workshops.cite(),
        "verdict_rule": "pass when at least min_passing_workshops workshops pass; firm-wide indicators shown for information",
    }
    return SmartResult(verdict, base.score, detail)
