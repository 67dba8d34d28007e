"""Alert rules and emission limits as versioned data, validated at load with every problem reported."""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from parkpulse.catalogue import load_catalogue
from parkpulse.errors import FieldError, ValidationReport

__all__ = [
    "HJ212_FLAGS",
    "KINDS",
    "EmissionLimits",
    "EmissionParams",
    "GapParams",
    "LimitChoice",
    "RateParams",
    "Rule",
    "RuleSet",
    "TamperParams",
    "ThresholdParams",
    "load_rules",
]

KINDS = ("emission", "data_gap", "tamper", "threshold", "rate_of_change")
# HJ 212-2017 data flags, as numbered by the catalogue's cems_flag metric.
HJ212_FLAGS: dict[str, int] = {"N": 0, "F": 1, "M": 2, "S": 3, "D": 4, "C": 5, "T": 6, "B": 7}
Severity = Literal["info", "warning", "critical"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmissionParams(_Strict):
    pollutants: list[str] = Field(min_length=1)
    limit_set: str
    overrides: list[str] = Field(default_factory=list)
    min_valid_minutes: int = Field(default=45, ge=1, le=60)
    excluded_flags: list[str] = Field(default_factory=lambda: ["F", "M", "D", "C", "B"])
    exclude_quality_from: int = Field(default=4, ge=1, le=4)
    clear_ratio: float = Field(default=1.0, gt=0, le=1)
    clear_hours: int = Field(default=1, ge=1, le=24)
    lookback_hours: int = Field(default=3, ge=1, le=72)
    grace_s: float = Field(default=120, ge=0, le=3600)


class GapParams(_Strict):
    check: Literal["device_silent", "gateway_offline", "seq_gap", "spool_gap"]
    poll_intervals: float = Field(default=5, gt=0)
    min_silence_s: float = Field(default=30, ge=0)
    default_poll_interval_s: float = Field(default=60, gt=0)
    clear_for_s: float = Field(default=0, ge=0)
    lookback_s: float = Field(default=3600, gt=0)


class TamperParams(_Strict):
    metrics: list[str] = Field(min_length=1)
    backward_tolerance: float = Field(default=0.01, ge=0)
    power_factor_margin: float = Field(default=1.5, ge=1)
    min_elapsed_s: float = Field(default=1, ge=0)
    clear_for_s: float = Field(default=3600, ge=0)


class _MetricRule(_Strict):
    metric: str
    device_kinds: list[Literal["meter", "line", "cems", "sensor"]] | None = None
    devices: list[str] | None = None  # "gateway/device"
    clear_level: float | None = None
    clear_for_s: float = Field(default=0, ge=0)
    fire_for_s: float = Field(default=0, ge=0)
    exclude_quality_from: int = Field(default=4, ge=1, le=4)


class ThresholdParams(_MetricRule):
    op: Literal["above", "below"]
    limit: float


class RateParams(_MetricRule):
    limit: float = Field(gt=0)
    per_s: float = Field(default=60, gt=0)
    max_gap_s: float = Field(default=900, gt=0)


_PARAMS: dict[str, type[_Strict]] = {
    "emission": EmissionParams,
    "data_gap": GapParams,
    "tamper": TamperParams,
    "threshold": ThresholdParams,
    "rate_of_change": RateParams,
}


class _RuleDoc(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    kind: Literal["emission", "data_gap", "tamper", "threshold", "rate_of_change"]
    version: int = Field(ge=1)
    severity: Severity = "warning"
    enabled: bool = True
    parks: list[str] | None = None
    message_zh: str | None = None
    message_en: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class _Sourced(_Strict):
    """Where a figure comes from: `source` (free text) and, where known, its parts."""

    source: str = Field(min_length=3)
    standard: str | None = None
    clause: str | None = None
    edition: str | None = None
    verified: bool = False
    note: str | None = None


class _RefO2(_Sourced):
    source_types: list[str] = Field(min_length=1)
    o2_ref_pct: float = Field(ge=0, lt=21)


class _LimitSet(_Sourced):
    id: str
    name_zh: str | None = None
    name_en: str | None = None
    limits: dict[str, dict[str, float]]


class _Override(_Sourced):
    id: str
    name_zh: str | None = None
    name_en: str | None = None
    parks: list[str] | None = None
    source_types: list[str] | None = None
    limits: dict[str, float]


class _LimitsDoc(_Strict):
    version: int = Field(ge=1)
    reference_o2: list[_RefO2]
    limit_sets: list[_LimitSet]
    overrides: list[_Override] = Field(default_factory=list)


@dataclass(frozen=True)
class LimitChoice:
    limit: float
    source: str
    limit_id: str


@dataclass(frozen=True)
class EmissionLimits:
    version: int
    reference_o2: dict[str, tuple[float, str]]
    limit_sets: dict[str, _LimitSet]
    overrides: dict[str, _Override]
    reference_o2_docs: dict[str, _RefO2] = field(default_factory=dict)  # source type → its entry (all source fields)
    path: str = ""

    def o2_ref(self, source_type: str | None) -> tuple[float, str] | None:
        return self.reference_o2.get(source_type or "")

    def limit_for(self, params: EmissionParams, park: str, source_type: str | None, metric: str) -> LimitChoice | None:
        """The strictest applicable limit: the rule's limit set and every override it names."""
        st = source_type or ""
        choices: list[LimitChoice] = []
        ls = self.limit_sets[params.limit_set]
        if metric in ls.limits.get(st, {}):
            choices.append(LimitChoice(ls.limits[st][metric], ls.source, ls.id))
        for oid in params.overrides:
            ov = self.overrides[oid]
            if ov.parks is not None and park not in ov.parks:
                continue
            if ov.source_types is not None and st not in ov.source_types:
                continue
            if metric in ov.limits:
                choices.append(LimitChoice(ov.limits[metric], ov.source, ov.id))
        return min(choices, key=lambda c: c.limit) if choices else None


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str
    version: int
    severity: str
    parks: tuple[str, ...] | None
    params: Any
    message_zh: str
    message_en: str
    definition: dict[str, Any]

    @property
    def checksum(self) -> str:
        return hashlib.sha256(json.dumps(self.definition, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def applies_to_park(self, park: str) -> bool:
        return self.parks is None or park in self.parks


@dataclass(frozen=True)
class RuleSet:
    version: int
    rules: tuple[Rule, ...]
    limits: EmissionLimits
    source: str
    problems: tuple[str, ...] = field(default=())

    def of_kind(self, kind: str) -> list[Rule]:
        return [r for r in self.rules if r.kind == kind]

    def gap_rules(self, check: str) -> list[Rule]:
        return [r for r in self.rules if r.kind == "data_gap" and r.params.check == check]


def _data_path(name: str) -> Path:
    return Path(str(resources.files("rules.alerts").joinpath("data", name)))


def _pyd_problems(prefix: str, exc: ValidationError) -> list[FieldError]:
    out = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e["loc"])
        out.append(FieldError(f"{prefix}.{loc}" if loc else prefix, e.get("input"), e["msg"]))
    return out


_SAMPLE = {
    "device": "gw/dev", "gateway": "gw", "park": "p", "firm": "f", "metric": "m", "metric_zh": "指标",
    "metric_en": "metric", "value": 1.0, "limit": 2.0, "unit": "u", "o2_ref": 3.5, "valid_minutes": 45,
    "reason_zh": "原因", "reason_en": "reason", "op_zh": "高于", "op_en": "above", "per_s": 60.0,
}  # fmt: skip


def _check_template(path: str, text: str) -> FieldError | None:
    try:
        for _, name, _, _ in string.Formatter().parse(text):
            if name is not None and name not in _SAMPLE:
                return FieldError(path, text, f"unknown placeholder {{{name}}}; known: {sorted(_SAMPLE)}")
        text.format(**_SAMPLE)
    except (ValueError, KeyError, IndexError) as exc:
        return FieldError(path, text, f"bad template: {exc}")
    return None


def _load_limits(path: Path, problems: list[FieldError]) -> EmissionLimits | None:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        problems.append(FieldError(str(path), None, f"cannot read: {exc}"))
        return None
    try:
        lim = _LimitsDoc.model_validate(doc)
    except ValidationError as exc:
        problems.extend(_pyd_problems(path.name, exc))
        return None
    cat = load_catalogue().by_name()
    ref: dict[str, tuple[float, str]] = {}
    ref_docs: dict[str, _RefO2] = {}
    for i, r in enumerate(lim.reference_o2):
        for st in r.source_types:
            if st in ref:
                problems.append(FieldError(f"{path.name}.reference_o2[{i}].source_types", st, "source type listed twice"))
            ref[st] = (r.o2_ref_pct, r.source)
            ref_docs[st] = r
    for i, ls in enumerate(lim.limit_sets):
        for st, per in ls.limits.items():
            for m, v in per.items():
                p = f"{path.name}.limit_sets[{i}].limits.{st}.{m}"
                if m not in cat or not cat[m].pollutant:
                    problems.append(FieldError(p, m, "not a pollutant metric of the catalogue"))
                if v <= 0:
                    problems.append(FieldError(p, v, "a limit must be > 0"))
            if st not in ref:
                problems.append(FieldError(f"{path.name}.limit_sets[{i}].limits.{st}", st, "no reference O2 for this source type"))
    for i, ov in enumerate(lim.overrides):
        for m, v in ov.limits.items():
            p = f"{path.name}.overrides[{i}].limits.{m}"
            if m not in cat or not cat[m].pollutant:
                problems.append(FieldError(p, m, "not a pollutant metric of the catalogue"))
            if v <= 0:
                problems.append(FieldError(p, v, "a limit must be > 0"))
    ids = [x.id for x in lim.limit_sets] + [x.id for x in lim.overrides]
    for dup in {x for x in ids if ids.count(x) > 1}:
        problems.append(FieldError(f"{path.name}.id", dup, "limit set / override id used twice"))
    return EmissionLimits(
        lim.version, ref, {x.id: x for x in lim.limit_sets}, {x.id: x for x in lim.overrides}, ref_docs, str(path)
    )


def _check_rule(
    i: int, doc: _RuleDoc, params: Any, limits: EmissionLimits | None, problems: list[FieldError]
) -> None:
    cat = load_catalogue().by_name()
    p = f"rules[{i}].params"
    if isinstance(params, EmissionParams):
        for m in params.pollutants:
            if m not in cat or not cat[m].pollutant:
                problems.append(FieldError(f"{p}.pollutants", m, "not a pollutant metric of the catalogue"))
        for f in params.excluded_flags:
            if f not in HJ212_FLAGS:
                problems.append(FieldError(f"{p}.excluded_flags", f, f"not an HJ 212 flag {sorted(HJ212_FLAGS)}"))
        if "N" in params.excluded_flags:
            problems.append(FieldError(f"{p}.excluded_flags", "N", "N (normal) cannot be excluded"))
        if limits is not None:
            if params.limit_set not in limits.limit_sets:
                problems.append(FieldError(f"{p}.limit_set", params.limit_set, f"unknown; known: {sorted(limits.limit_sets)}"))
            for o in params.overrides:
                if o not in limits.overrides:
                    problems.append(FieldError(f"{p}.overrides", o, f"unknown; known: {sorted(limits.overrides)}"))
    elif isinstance(params, TamperParams):
        for m in params.metrics:
            if m not in cat or cat[m].kind != "counter":
                problems.append(FieldError(f"{p}.metrics", m, "not a counter metric of the catalogue"))
    elif isinstance(params, ThresholdParams | RateParams):
        if params.metric not in cat:
            problems.append(FieldError(f"{p}.metric", params.metric, "not a metric of the catalogue"))
        if params.devices is not None:
            for d in params.devices:
                if d.count("/") != 1:
                    problems.append(FieldError(f"{p}.devices", d, "expected 'gateway/device'"))
        if isinstance(params, ThresholdParams) and params.clear_level is not None:
            if params.op == "above" and params.clear_level > params.limit:
                problems.append(FieldError(f"{p}.clear_level", params.clear_level, f"must be ≤ limit {params.limit} for op above"))
            if params.op == "below" and params.clear_level < params.limit:
                problems.append(FieldError(f"{p}.clear_level", params.clear_level, f"must be ≥ limit {params.limit} for op below"))
        if isinstance(params, RateParams) and params.clear_level is not None and params.clear_level > params.limit:
            problems.append(FieldError(f"{p}.clear_level", params.clear_level, f"must be ≤ limit {params.limit}"))


def load_rules(rules_path: str | Path | None = None, limits_path: str | Path | None = None) -> RuleSet:
    """Load and validate the rule file and the emission limits; raises ValidationReport with every problem."""
    rp = Path(rules_path) if rules_path else _data_path("alert_rules.yaml")
    lp = Path(limits_path) if limits_path else _data_path("emission_limits.yaml")
    problems: list[FieldError] = []
    limits = _load_limits(lp, problems)
    try:
        doc = yaml.safe_load(rp.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValidationReport(str(rp), [*problems, FieldError(str(rp), None, f"cannot read: {exc}")]) from None
    if not isinstance(doc, dict):
        raise ValidationReport(str(rp), [*problems, FieldError("(file)", type(doc).__name__, "must be a mapping")])
    version = doc.get("version")
    if type(version) is not int or version < 1:
        problems.append(FieldError("version", version, "rule-set version must be an integer ≥ 1"))
    messages = doc.get("messages") or {}
    if not isinstance(messages, dict):
        problems.append(FieldError("messages", messages, "must be a mapping kind → {zh, en}"))
        messages = {}
    for key, m in messages.items():
        if not isinstance(m, dict) or set(m) != {"zh", "en"}:
            problems.append(FieldError(f"messages.{key}", m, "must have exactly zh and en"))
            continue
        for lang in ("zh", "en"):
            prob = _check_template(f"messages.{key}.{lang}", str(m[lang]))
            if prob:
                problems.append(prob)
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list):
        problems.append(FieldError("rules", raw_rules, "must be a list"))
        raw_rules = []
    extra = set(doc) - {"version", "messages", "rules"}
    for k in sorted(extra):
        problems.append(FieldError(k, doc[k], "unknown top-level key"))
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_rules):
        try:
            rd = _RuleDoc.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_pyd_problems(f"rules[{i}]", exc))
            continue
        if rd.id in seen:
            problems.append(FieldError(f"rules[{i}].id", rd.id, "rule id used twice"))
        seen.add(rd.id)
        try:
            params = _PARAMS[rd.kind].model_validate(rd.params)
        except ValidationError as exc:
            problems.extend(_pyd_problems(f"rules[{i}].params", exc))
            continue
        _check_rule(i, rd, params, limits, problems)
        msg_key = params.check if isinstance(params, GapParams) else rd.kind
        tmpl = messages.get(msg_key) if isinstance(messages.get(msg_key), dict) else None
        zh = rd.message_zh or (tmpl or {}).get("zh")
        en = rd.message_en or (tmpl or {}).get("en")
        for lang, text in (("zh", zh), ("en", en)):
            if not text:
                problems.append(FieldError(f"rules[{i}].message_{lang}", None, f"no message and no default messages.{msg_key}"))
            elif rd.message_zh if lang == "zh" else rd.message_en:
                prob = _check_template(f"rules[{i}].message_{lang}", text)
                if prob:
                    problems.append(prob)
        if not rd.enabled:
            continue
        rules.append(
            Rule(rd.id, rd.kind, rd.version, rd.severity, tuple(rd.parks) if rd.parks is not None else None,
                 params, str(zh), str(en), raw if isinstance(raw, dict) else {})
        )
    if problems or limits is None:
        raise ValidationReport(f"{rp.name} + {lp.name}", problems)
    assert isinstance(version, int)
    return RuleSet(version, tuple(rules), limits, str(rp))
