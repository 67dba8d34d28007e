"""亩均效益: indicators per firm, the weighted score, and the A/B/C class by the configured method.

Pure functions. Every firm in the input comes out with a class: A, B, C or out_of_scope (with the
reason), and an explanation of the numbers that put it there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from rules._figures import Figure, TextFigure
from rules._ruleset import MuScheme

__all__ = ["INDICATOR_INFO", "MuFirm", "MuOutcome", "classify", "indicators_for", "quota"]

# name → (中文, unit)
INDICATOR_INFO: dict[str, tuple[str, str]] = {
    "mu_tax": ("亩均税收", "10k CNY/mu"),
    "mu_added_value": ("亩均增加值", "10k CNY/mu"),
    "mu_revenue": ("亩均主营业务收入", "10k CNY/mu"),
    "mu_profit": ("亩均利润", "10k CNY/mu"),
    "added_value_per_energy": ("单位能耗增加值", "10k CNY/tce"),
    "output_per_energy": ("单位能耗总产值", "10k CNY/tce"),
    "added_value_per_pollutant": ("单位排放增加值", "10k CNY/t"),
    "tax_per_pollutant": ("单位排放税收", "10k CNY/t"),
    "labour_productivity": ("全员劳动生产率", "10k CNY/person"),
    "rd_intensity": ("R&D 强度", "1"),
    "tax_per_electricity": ("单位电耗税收", "10k CNY/MWh"),
}


@dataclass
class MuFirm:
    """What the 亩均 evaluation needs of one firm (money in 万元)."""

    firm_id: str
    land_mu: float
    above_scale: bool
    years_in_production: float | None
    added_value: float | None
    tax: float | None
    revenue: float | None
    rd_spend: float | None
    employees: float | None
    pollutant_t: float | None
    output_value: float | None
    energy_tce: float | None  # the productivity basis (等价值 by default)
    electricity_mwh: float | None
    has_economics: bool = True
    profit: float | None = None  # 利润总额 (negative for a loss)


@dataclass
class MuOutcome:
    firm_id: str
    klass: str
    in_scope: bool
    indicators: dict[str, float | None] = field(default_factory=dict)
    score: float | None = None
    explanation: dict[str, object] = field(default_factory=dict)


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def indicators_for(f: MuFirm) -> dict[str, float | None]:
    return {
        "mu_tax": _div(f.tax, f.land_mu),
        "mu_added_value": _div(f.added_value, f.land_mu),
        "mu_revenue": _div(f.revenue, f.land_mu),
        "mu_profit": _div(f.profit, f.land_mu),
        "added_value_per_energy": _div(f.added_value, f.energy_tce),
        "output_per_energy": _div(f.output_value, f.energy_tce),
        "added_value_per_pollutant": _div(f.added_value, f.pollutant_t),
        "tax_per_pollutant": _div(f.tax, f.pollutant_t),
        "labour_productivity": _div(f.added_value, f.employees),
        "rd_intensity": _div(f.rd_spend, f.revenue),
        "tax_per_electricity": _div(f.tax, f.electricity_mwh),
    }


def _scope_reason(scheme: MuScheme, f: MuFirm) -> str | None:
    size = "above_scale" if f.above_scale else "below_scale"
    if size not in scheme.scope.size_classes:
        src = scheme.scope.size_source.source if scheme.scope.size_source else scheme.name
        return f"{size}: the scheme evaluates {', '.join(scheme.scope.size_classes)} firms only ({src})"
    my = scheme.scope.min_years_in_production
    if my is not None and f.years_in_production is not None and f.years_in_production < my.value:
        return f"{f.years_in_production:.2f} years in production < {my.value:g} ({my.source})"
    ml = scheme.scope.min_land_mu
    if ml is not None and f.land_mu < ml.value:
        return f"land {f.land_mu:g} mu < {ml.value:g} mu ({ml.source})"
    if not f.has_economics:
        return "no economic data imported for the year (parkpulse firms import)"
    if f.land_mu <= 0:
        return "land area 0 mu: per-mu indicators undefined"
    return None


def quota(n: int, share: float, rounding: str) -> int:
    x = Decimal(n) * Decimal(str(share))
    mode = {"half_up": ROUND_HALF_UP, "floor": ROUND_FLOOR, "ceil": ROUND_CEILING}[rounding]
    return int(x.quantize(Decimal(1), rounding=mode))


def _fig(p: dict[str, object], key: str) -> float:
    return Figure.model_validate(p[key]).value


_Bench = dict[str, tuple[float | None, dict[str, object]]]  # indicator → (benchmark or None, its citation)


def _scope_outcomes(scheme: MuScheme, firms: list[MuFirm]) -> tuple[dict[str, MuOutcome], list[MuFirm]]:
    """Every firm's indicators; out-of-scope firms get their class and reason, in-scope ones a placeholder B."""
    outcomes: dict[str, MuOutcome] = {}
    in_scope: list[MuFirm] = []
    for f in firms:
        reason = _scope_reason(scheme, f)
        ind = indicators_for(f)
        if reason:
            outcomes[f.firm_id] = MuOutcome(
                f.firm_id,
                "out_of_scope",
                False,
                ind,
                None,
                {
                    "class": "out_of_scope",
                    "reason": reason,
                    "text": f"Out of scope: {reason}.",
                    "text_zh": f"不参评：{reason}。",
                },
            )
        else:
            in_scope.append(f)
            outcomes[f.firm_id] = MuOutcome(f.firm_id, "B", True, ind)
    return outcomes, in_scope


def _benchmarks(scheme: MuScheme, in_scope: list[MuOutcome]) -> _Bench:
    """Each indicator's benchmark: the scheme's fixed figure, or the park mean of the in-scope firms."""
    bench: _Bench = {}
    for name, spec in scheme.indicators.items():
        if isinstance(spec.benchmark, Figure):
            bench[name] = (spec.benchmark.value, spec.benchmark.cite())
        else:
            vals = [v for v in (o.indicators[name] for o in in_scope) if v is not None]
            mean = sum(vals) / len(vals) if vals else None
            bench[name] = (
                mean if mean else None,
                {"value": mean, "source": f"park mean of {len(vals)} in-scope firms"},
            )
    return bench


def _item_points(scheme: MuScheme, o: MuOutcome, bench: _Bench) -> dict[str, float | None]:
    """Points of each item: value / benchmark (capped) x weight; None without a value or a benchmark."""
    points: dict[str, float | None] = {}
    for name, spec in scheme.indicators.items():
        v, b = o.indicators[name], bench[name][0]
        if v is None or b is None:
            points[name] = None
            continue
        ratio = v / b
        if spec.cap is not None:
            ratio = min(ratio, spec.cap)
        points[name] = ratio * spec.weight.value
    return points


def _score(
    scheme: MuScheme,
    o: MuOutcome,
    points: dict[str, float | None],
    bench: _Bench,
    averages: dict[str, float],
) -> None:
    """Set the firm's score and its item-by-item explanation (an item without data per the scheme's rule)."""
    items: list[dict[str, object]] = []
    total = 0.0
    for name, spec in scheme.indicators.items():
        pts = points[name]
        note = None
        if pts is None:
            if spec.missing == "park_average":
                pts, note = averages[name], "no data: the park average score of this item (scheme rule)"
            else:
                pts, note = 0.0, "no data: 0 points"
        total += pts
        zh, unit = INDICATOR_INFO[name]
        item: dict[str, object] = {
            "indicator": name,
            "zh": zh,
            "value": o.indicators[name],
            "unit": unit,
            "benchmark": bench[name][1],
            "weight": spec.weight.value,
            "points": pts,
        }
        if spec.cap is not None:
            item["cap"] = spec.cap
        if note:
            item["note"] = note
        items.append(item)
    o.score = total
    o.explanation = {
        "score": total,
        "items": items,
        "scheme": scheme.name,
        "formula": "score = sum(value / benchmark x weight)",
    }


def classify(scheme: MuScheme, firms: list[MuFirm]) -> list[MuOutcome]:
    """Score and class every firm of one park (the firms are ranked among themselves)."""
    outcomes, in_scope = _scope_outcomes(scheme, firms)
    bench = _benchmarks(scheme, [outcomes[f.firm_id] for f in in_scope])
    points = {f.firm_id: _item_points(scheme, outcomes[f.firm_id], bench) for f in in_scope}
    averages: dict[str, float] = {}
    for name in scheme.indicators:
        got = [v for p in points.values() if (v := p[name]) is not None]
        averages[name] = (sum(got) / len(got)) if got else 0.0
    for f in in_scope:
        _score(scheme, outcomes[f.firm_id], points[f.firm_id], bench, averages)
    if scheme.class_method.method == "two_stage":
        _two_stage(scheme, in_scope, outcomes, bench)
    else:
        _percentile(scheme, in_scope, outcomes)
    return [outcomes[f.firm_id] for f in firms]


def _rank_value(
    o: MuOutcome, names: list[str], bench: dict[str, tuple[float | None, dict[str, object]]]
) -> float | None:
    """One indicator: its value. Several: the sum of value / benchmark (each indicator's score)."""
    if len(names) == 1:
        return o.indicators[names[0]]
    total = 0.0
    for n in names:
        v, b = o.indicators[n], bench.get(n, (None, {}))[0]
        if v is None:
            return None
        total += v / b if b else v
    return total


def _two_stage(
    scheme: MuScheme,
    in_scope: list[MuFirm],
    outcomes: dict[str, MuOutcome],
    bench: dict[str, tuple[float | None, dict[str, object]]],
) -> None:
    p = scheme.class_method.params
    rounding = TextFigure.model_validate(p["rounding"]).value if p.get("rounding") else "half_up"
    n = len(in_scope)
    if n == 0:
        return
    by_score = sorted(in_scope, key=lambda f: (-(outcomes[f.firm_id].score or 0.0), f.firm_id))
    top_n = min(n, quota(n, _fig(p, "top_share"), rounding))
    bottom_n = min(n - top_n, quota(n, _fig(p, "bottom_share"), rounding))
    top = by_score[:top_n]
    bottom = by_score[n - bottom_n :] if bottom_n else []
    a_n = min(top_n, quota(n, _fig(p, "a_share"), rounding))
    c_n = min(len(bottom), quota(n, _fig(p, "c_share"), rounding))
    a_by: list[str] = list(p["a_rank_by"])
    c_by: list[str] = list(p["c_rank_by"])
    fallback: list[str] = list(p.get("c_rank_fallback") or [])
    used_fallback = False
    if fallback and any(_rank_value(outcomes[f.firm_id], c_by, bench) is None for f in bottom):
        c_by, used_fallback = fallback, True

    def a_key(f: MuFirm) -> tuple[float, float, str]:
        v = _rank_value(outcomes[f.firm_id], a_by, bench)
        return (-(v if v is not None else -math.inf), -(outcomes[f.firm_id].score or 0.0), f.firm_id)

    def c_key(f: MuFirm) -> tuple[float, float, str]:
        v = _rank_value(outcomes[f.firm_id], c_by, bench)
        return (v if v is not None else math.inf, outcomes[f.firm_id].score or 0.0, f.firm_id)

    a_sorted = sorted(top, key=a_key)
    c_sorted = sorted(bottom, key=c_key)
    a_set = {f.firm_id for f in a_sorted[:a_n]}
    c_set = {f.firm_id for f in c_sorted[:c_n]}
    rank = {f.firm_id: i + 1 for i, f in enumerate(by_score)}
    a_rank = {f.firm_id: i + 1 for i, f in enumerate(a_sorted)}
    c_rank = {f.firm_id: i + 1 for i, f in enumerate(c_sorted)}
    a_label = " + ".join(INDICATOR_INFO[x][0] for x in a_by)
    c_label = " + ".join(INDICATOR_INFO[x][0] for x in c_by)
    common = {
        "method": "two_stage",
        "source": scheme.class_method.source,
        "evaluated": n,
        "rounding": rounding,
        "top_half": {"share": _fig(p, "top_share"), "count": top_n},
        "bottom_half": {"share": _fig(p, "bottom_share"), "count": bottom_n},
        "a_quota": {"share": _fig(p, "a_share"), "count": a_n, "rank_by": a_by},
        "c_quota": {
            "share": _fig(p, "c_share"),
            "count": c_n,
            "rank_by": c_by,
            "fallback_used": used_fallback,
        },
    }
    for f in in_scope:
        o = outcomes[f.firm_id]
        r = rank[f.firm_id]
        cls_info: dict[str, object] = {**common, "score_rank": r}
        if f.firm_id in a_set:
            o.klass = "A"
            text = (
                f"A: score {o.score:.2f} ranks {r} of {n} (top {top_n}); within the top half it ranks "
                f"{a_rank[f.firm_id]} by {a_label} ({_fmt(_rank_value(o, a_by, bench))}), inside the A quota "
                f"of {a_n} ({_fig(p, 'a_share'):.0%} of {n})."
            )
            zh = (
                f"A 类（优先发展）：综合得分 {o.score:.2f}，排名 {r}/{n}（前 {top_n} 名）；前半区按{a_label}排第 "
                f"{a_rank[f.firm_id]}（{_fmt(_rank_value(o, a_by, bench))}），在 A 类名额 {a_n} 家以内。"
            )
        elif f.firm_id in c_set:
            o.klass = "C"
            text = (
                f"C: score {o.score:.2f} ranks {r} of {n} (bottom {bottom_n}); within the bottom half it ranks "
                f"{c_rank[f.firm_id]} lowest by {c_label} ({_fmt(_rank_value(o, c_by, bench))}), inside the C "
                f"quota of {c_n} ({_fig(p, 'c_share'):.0%} of {n})."
            )
            zh = (
                f"C 类（倒逼转型）：综合得分 {o.score:.2f}，排名 {r}/{n}（后 {bottom_n} 名）；后半区按{c_label}由低到高排第 "
                f"{c_rank[f.firm_id]}（{_fmt(_rank_value(o, c_by, bench))}），在 C 类名额 {c_n} 家以内。"
            )
        else:
            o.klass = "B"
            if f.firm_id in a_rank:
                why = (
                    f"in the top half (rank {r} of {n}) but ranks {a_rank[f.firm_id]} by {a_label} "
                    f"({_fmt(_rank_value(o, a_by, bench))}), outside the A quota of {a_n}"
                )
            elif f.firm_id in c_rank:
                why = (
                    f"in the bottom half (rank {r} of {n}) but ranks {c_rank[f.firm_id]} lowest by {c_label} "
                    f"({_fmt(_rank_value(o, c_by, bench))}), outside the C quota of {c_n}"
                )
            else:
                why = f"rank {r} of {n}: in neither half"
            text = f"B: score {o.score:.2f}; {why}."
            if f.firm_id in a_rank:
                why_zh = f"位于前半区（排名 {r}/{n}），但按{a_label}排第 {a_rank[f.firm_id]}，不在 A 类名额 {a_n} 家以内"
            elif f.firm_id in c_rank:
                why_zh = f"位于后半区（排名 {r}/{n}），但按{c_label}由低到高排第 {c_rank[f.firm_id]}，不在 C 类名额 {c_n} 家以内"
            else:
                why_zh = f"排名 {r}/{n}"
            zh = f"B 类（鼓励提升）：综合得分 {o.score:.2f}；{why_zh}。"
        if f.firm_id in a_rank:
            cls_info["a_rank"] = a_rank[f.firm_id]
            cls_info["a_rank_value"] = _rank_value(o, a_by, bench)
        if f.firm_id in c_rank:
            cls_info["c_rank"] = c_rank[f.firm_id]
            cls_info["c_rank_value"] = _rank_value(o, c_by, bench)
        o.explanation = {**o.explanation, "class": o.klass, "classing": cls_info, "text": text, "text_zh": zh}


def _percentile(scheme: MuScheme, in_scope: list[MuFirm], outcomes: dict[str, MuOutcome]) -> None:
    p = scheme.class_method.params
    rounding = TextFigure.model_validate(p["rounding"]).value if p.get("rounding") else "half_up"
    shares: dict[str, float] = {k: float(v) for k, v in p["shares"].items()}
    report_as: dict[str, str] = dict(p.get("report_as") or {})
    n = len(in_scope)
    by_score = sorted(in_scope, key=lambda f: (-(outcomes[f.firm_id].score or 0.0), f.firm_id))
    bounds: list[tuple[str, int]] = []
    cum = 0.0
    for cls, share in shares.items():
        cum += share
        bounds.append((cls, min(n, quota(n, cum, rounding))))
    for i, f in enumerate(by_score):
        o = outcomes[f.firm_id]
        tier = next((c for c, hi in bounds if i < hi), bounds[-1][0])
        o.klass = report_as.get(tier, tier)
        note = f" (tier {tier} reported as {o.klass})" if tier != o.klass else ""
        o.explanation = {
            **o.explanation,
            "class": o.klass,
            "classing": {
                "method": "percentile",
                "source": scheme.class_method.source,
                "evaluated": n,
                "score_rank": i + 1,
                "tier": tier,
                "bounds": dict(bounds),
            },
            "text": f"{o.klass}: score {o.score:.2f} ranks {i + 1} of {n}{note}.",
            "text_zh": f"{o.klass} 类：综合得分 {o.score:.2f}，排名 {i + 1}/{n}。",
        }


def _fmt(v: float | None) -> str:
    return "no data" if v is None else f"{v:.4g}"
