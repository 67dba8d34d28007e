"""Alert rules and emission limits as versioned data, validated at load with every problem reported."""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alerts._hj212 import load_flag_tables
from parkpulse.catalogue import Metric, load_catalogue
from parkpulse.errors import FieldError, ValidationReport

__all__ = [
    "HJ212_FLAGS",
    "EmissionLimits",
    "EmissionParams",
    "GapParams",
    "LimitCandidate",
    "LimitChoice",
    "LimitTables",
    "RateParams",
    "Rule",
    "RuleSet",
    "Stack",
    "TamperParams",
    "ThresholdParams",
    "load_rules",
]

# HJ 212 data flags of the default edition (2017) → the catalogue's cems_flag codes; every
# edition's table, with sources, is data/hj212_flags.yaml (alerts/_hj212.py).
HJ212_FLAGS: dict[str, int] = load_flag_tables().codes()
Severity = Literal["info", "warning", "critical"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitTables(_Strict):
    """The limit sets of a standard by what selects them: the stack's age class, or special limits."""

    existing: str
    new: str
    special: str | None = None


class EmissionParams(_Strict):
    pollutants: list[str] = Field(min_length=1)
    limit_tables: LimitTables
    special_areas: list[str] = Field(default_factory=list)
    overrides: list[str] = Field(default_factory=list)
    min_valid_minutes: int = Field(default=45, ge=1, le=60)
    excluded_flags: list[str] | dict[str, list[str]] | None = None  # None: per edition, data/hj212_flags.yaml
    exclude_quality_from: int = Field(default=4, ge=1, le=4)
    clear_ratio: float = Field(default=1.0, gt=0, le=1)
    clear_hours: int = Field(default=1, ge=1, le=24)
    lookback_hours: int = Field(default=3, ge=1, le=72)
    grace_s: float = Field(default=120, ge=0, le=3600)

    @model_validator(mode="before")
    @classmethod
    def _no_single_limit_set(cls, data: Any) -> Any:
        if isinstance(data, dict) and "limit_set" in data:
            raise ValueError(
                f"limit_set: one limit set for every stack is no longer supported (got {data['limit_set']!r}); "
                "name the tables by age class: limit_tables: {existing: …, new: …, special: …}"
            )
        return data


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
    table: str = Field(min_length=1)  # e.g. "Table 1"
    table_zh: str | None = None  # e.g. "表1"
    applies_to: Literal["existing", "new", "special"]
    name_zh: str | None = None
    name_en: str | None = None
    limits: dict[str, dict[str, float]]


class _Override(_Sourced):
    id: str
    label_zh: str | None = None
    label_en: str | None = None
    name_zh: str | None = None
    name_en: str | None = None
    parks: list[str] | None = None
    cities: list[str] | None = None
    source_types: list[str] | None = None
    limits: dict[str, float]


class _Area(_Sourced):
    """Where special limits apply by a notice (e.g. the 2+26 cities), from `since`."""

    id: str
    label_zh: str = Field(min_length=1)
    label_en: str = Field(min_length=1)
    since: date
    cities: list[str] = Field(min_length=1)
    cities_en: list[str] = Field(default_factory=list)


class _ExtraPollutant(_Strict):
    metric: str = Field(pattern=r"^[a-z0-9_]+$")
    pollutant: str = Field(pattern=r"^[a-z0-9_]+$")
    name_zh: str | None = None
    name_en: str | None = None
    note: str | None = None


class _LimitsDoc(_Strict):
    version: int = Field(ge=1)
    pollutants_outside_catalogue: list[_ExtraPollutant] = Field(default_factory=list)
    reference_o2: list[_RefO2]
    limit_sets: list[_LimitSet]
    special_limit_areas: list[_Area] = Field(default_factory=list)
    overrides: list[_Override] = Field(default_factory=list)


def city_key(city: str | None) -> str:
    """A city name as compared with the lists: trimmed, case-folded, without a trailing 市."""
    c = (city or "").strip().casefold()
    return c[:-1] if c.endswith("市") else c


@dataclass(frozen=True)
class Stack:
    """What picks a CEMS stack's limits: its source type, fuel and age class (registry) and its park's
    city and special-limits flag (`special_applies` None: the park does not state it)."""

    park: str
    source_type: str | None
    fuel: str | None = None
    age_class: str | None = None
    city: str | None = None
    special_applies: bool | None = None
    special_basis: str | None = None
    special_since: date | None = None
    timezone: str = "Asia/Shanghai"

    def local_date(self, at: datetime | None) -> date | None:
        if at is None:
            return None
        try:
            return at.astimezone(ZoneInfo(self.timezone)).date()
        except (KeyError, ValueError):
            return at.date()

    def as_json(self) -> dict[str, Any]:
        return {
            "park": self.park,
            "source_type": self.source_type,
            "fuel": self.fuel,
            "age_class": self.age_class,
            "city": self.city,
            "special_limits": None
            if self.special_applies is None
            else {
                "applies": self.special_applies,
                "basis": self.special_basis,
                "since": self.special_since.isoformat() if self.special_since else None,
            },
        }


@dataclass(frozen=True)
class LimitCandidate:
    """One limit considered for a stack and pollutant, whether it applies, and why (zh / en)."""

    limit_id: str
    table: str  # "Table 1", or "override"
    value: float
    applies: bool
    why_zh: str
    why_en: str
    source: str
    verified: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "limit_id": self.limit_id,
            "table": self.table,
            "value": self.value,
            "applies": self.applies,
            "why_en": self.why_en,
            "why_zh": self.why_zh,
            "verified": self.verified,
        }


@dataclass(frozen=True)
class LimitChoice:
    limit: float
    source: str
    limit_id: str
    table: str = ""
    basis_zh: str = ""
    basis_en: str = ""  # e.g. "Table 3 (2+26 city), 150 mg/m³"
    verified: bool = False
    candidates: tuple[LimitCandidate, ...] = ()

    def evidence(self) -> dict[str, Any]:
        """The alert evidence keys that say which limit was used and why."""
        return {
            "limit": self.limit,
            "limit_id": self.limit_id,
            "limit_source": self.source,
            "limit_table": self.table,
            "limit_basis_zh": self.basis_zh,
            "limit_basis_en": self.basis_en,
            "limit_verified": self.verified,
            "limit_candidates": [c.as_json() for c in self.candidates],
        }


@dataclass(frozen=True)
class EmissionLimits:
    version: int
    reference_o2: dict[str, tuple[float, str]]
    limit_sets: dict[str, _LimitSet]
    overrides: dict[str, _Override]
    reference_o2_docs: dict[str, _RefO2] = field(
        default_factory=dict
    )  # source type → its entry (all source fields)
    path: str = ""
    areas: dict[str, _Area] = field(default_factory=dict)
    extra_pollutants: dict[str, _ExtraPollutant] = field(default_factory=dict)  # metric → entry

    def o2_ref(self, source_type: str | None) -> tuple[float, str] | None:
        return self.reference_o2.get(source_type or "")

    def special_limits(
        self, params: EmissionParams, stack: Stack, at: datetime | None
    ) -> tuple[bool, str, str]:
        """Do special limits (Table 3) apply to this stack at `at`? → (applies, why_zh, why_en).

        The park's own flag, when stated, decides; otherwise its city in one of the rule's areas.
        Before the flag's / area's `since` date (in the park's time zone) they do not apply yet."""
        day = stack.local_date(at)
        if stack.special_applies is not None:
            basis = stack.special_basis or "—"
            if not stack.special_applies:
                return False, f"园区未执行特别排放限值（{basis}）", f"park states no special limits ({basis})"
            if stack.special_since is not None and day is not None and day < stack.special_since:
                return (
                    False,
                    f"园区特别排放限值自 {stack.special_since} 起执行",
                    f"park special limits only from {stack.special_since}",
                )
            return True, f"园区执行特别排放限值：{basis}", f"park special limits: {basis}"
        key = city_key(stack.city)
        for aid in params.special_areas:
            area = self.areas[aid]
            names = {city_key(c) for c in (*area.cities, *area.cities_en)}
            if key and key in names:
                if day is not None and day < area.since:
                    return (
                        False,
                        f"{area.label_zh}，自 {area.since} 起执行",
                        f"{area.label_en}, only from {area.since}",
                    )
                return True, area.label_zh, area.label_en
        where = stack.city or "城市未登记"
        where_en = stack.city or "city not registered"
        return False, f"{where}不在特别排放限值地区", f"{where_en} is not in a special-limits area"

    def limit_for(
        self, params: EmissionParams, stack: Stack, metric: str, at: datetime | None = None
    ) -> LimitChoice | None:
        """The strictest applicable limit for one stack and pollutant at `at`, with every candidate and why.

        Candidates: the table of the stack's age class (Table 1 existing / Table 2 new; a stack whose age
        class is not registered is judged on the existing-boiler table, the most lenient), the special
        table when special limits apply, and each override the rule names that covers the park."""
        st = stack.source_type or ""
        cands: list[LimitCandidate] = []
        tables = params.limit_tables
        age = stack.age_class
        for role, set_id in (("existing", tables.existing), ("new", tables.new), ("special", tables.special)):
            if set_id is None:
                continue
            ls = self.limit_sets[set_id]
            if metric not in ls.limits.get(st, {}):
                continue
            if role == "special":
                applies, why_zh, why_en = self.special_limits(params, stack, at)
            elif age is None:
                applies = role == "existing"
                why_zh, why_en = "在用/新建未登记，按在用锅炉", "age class not registered, judged as existing"
            else:
                applies = age == role
                why_zh, why_en = (
                    ("在用锅炉", "existing boiler") if role == "existing" else ("新建锅炉", "new boiler")
                )
                if not applies:
                    why_zh = f"非{why_zh}"
                    why_en = f"not a {why_en}"
            cands.append(
                LimitCandidate(
                    ls.id, ls.table, ls.limits[st][metric], applies, why_zh, why_en, ls.source, ls.verified
                )
            )
        for oid in params.overrides:
            ov = self.overrides[oid]
            if ov.source_types is not None and st not in ov.source_types:
                continue
            if metric not in ov.limits:
                continue
            in_park = ov.parks is None or stack.park in ov.parks
            in_city = ov.cities is None or city_key(stack.city) in {city_key(c) for c in ov.cities}
            label_zh, label_en = ov.label_zh or ov.id, ov.label_en or ov.id
            applies = in_park and in_city
            if not applies:
                label_zh, label_en = f"{label_zh}（不适用于本园区）", f"{label_en} (not this park)"
            cands.append(
                LimitCandidate(
                    ov.id, "override", ov.limits[metric], applies, label_zh, label_en, ov.source, ov.verified
                )
            )
        used = [c for c in cands if c.applies]
        if not used:
            return None
        best = min(used, key=lambda c: c.value)  # the strictest; on a tie the first (the table) names it
        if best.table == "override":
            basis_zh = f"地方要求：{best.why_zh}，{best.value:g} mg/m³"
            basis_en = f"local override: {best.why_en}, {best.value:g} mg/m³"
        else:
            ls = self.limit_sets[best.limit_id]
            basis_zh = f"{ls.table_zh or ls.table}（{best.why_zh}），{best.value:g} mg/m³"
            basis_en = f"{ls.table} ({best.why_en}), {best.value:g} mg/m³"
        return LimitChoice(
            best.value,
            best.source,
            best.limit_id,
            best.table,
            basis_zh,
            basis_en,
            best.verified,
            tuple(cands),
        )


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
        return hashlib.sha256(json.dumps(self.definition, sort_keys=True, default=str).encode()).hexdigest()[
            :16
        ]

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
    return Path(str(resources.files("alerts").joinpath("data", name)))


def _pyd_problems(prefix: str, exc: ValidationError) -> list[FieldError]:
    out = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e["loc"])
        out.append(FieldError(f"{prefix}.{loc}" if loc else prefix, e.get("input"), e["msg"]))
    return out


_SAMPLE = {
    "device": "gw/dev",
    "gateway": "gw",
    "park": "p",
    "firm": "f",
    "metric": "m",
    "metric_zh": "指标",
    "metric_en": "metric",
    "value": 1.0,
    "limit": 2.0,
    "unit": "u",
    "o2_ref": 3.5,
    "valid_minutes": 45,
    "reason_zh": "原因",
    "reason_en": "reason",
    "op_zh": "高于",
    "op_en": "above",
    "per_s": 60.0,
    "limit_basis_zh": "表3（2+26城市），150 mg/m³",
    "limit_basis_en": "Table 3 (2+26 city), 150 mg/m³",
}


def _check_template(path: str, text: str) -> FieldError | None:
    try:
        for _, name, _, _ in string.Formatter().parse(text):
            if name is not None and name not in _SAMPLE:
                return FieldError(path, text, f"unknown placeholder {{{name}}}; known: {sorted(_SAMPLE)}")
        text.format(**_SAMPLE)
    except (ValueError, KeyError, IndexError) as exc:
        return FieldError(path, text, f"bad template: {exc}")
    return None


def _read_limits_doc(path: Path, problems: list[FieldError]) -> _LimitsDoc | None:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        problems.append(FieldError(str(path), None, f"cannot read: {exc}"))
        return None
    try:
        return _LimitsDoc.model_validate(doc)
    except ValidationError as exc:
        problems.extend(_pyd_problems(path.name, exc))
        return None


def _extra_pollutants(
    name: str, lim: _LimitsDoc, cat: dict[str, Metric], problems: list[FieldError]
) -> dict[str, _ExtraPollutant]:
    """The pollutants declared outside the catalogue, by metric; one the catalogue has is a problem."""
    extra: dict[str, _ExtraPollutant] = {}
    for i, x in enumerate(lim.pollutants_outside_catalogue):
        if x.metric in cat:
            problems.append(
                FieldError(
                    f"{name}.pollutants_outside_catalogue[{i}].metric",
                    x.metric,
                    "is a metric of the catalogue: remove it here",
                )
            )
        extra[x.metric] = x
    return extra


def _reference_o2(
    name: str, lim: _LimitsDoc, problems: list[FieldError]
) -> tuple[dict[str, tuple[float, str]], dict[str, _RefO2]]:
    """Reference O2 by source type: (percent, source) and the whole entry; a type listed twice is a problem."""
    ref: dict[str, tuple[float, str]] = {}
    ref_docs: dict[str, _RefO2] = {}
    for i, r in enumerate(lim.reference_o2):
        for st in r.source_types:
            if st in ref:
                problems.append(
                    FieldError(f"{name}.reference_o2[{i}].source_types", st, "source type listed twice")
                )
            ref[st] = (r.o2_ref_pct, r.source)
            ref_docs[st] = r
    return ref, ref_docs


def _check_limit_values(
    prefix: str,
    limits: dict[str, float],
    cat: dict[str, Metric],
    extra: dict[str, _ExtraPollutant],
    problems: list[FieldError],
) -> None:
    """Each limit (pollutant → value) under `prefix` names a known pollutant and is > 0."""
    for m, v in limits.items():
        p = f"{prefix}.{m}"
        if m not in extra and (m not in cat or not cat[m].pollutant):
            problems.append(
                FieldError(
                    p, m, "not a pollutant metric of the catalogue (nor in pollutants_outside_catalogue)"
                )
            )
        if v <= 0:
            problems.append(FieldError(p, v, "a limit must be > 0"))


def _check_limit_tables(
    name: str,
    lim: _LimitsDoc,
    cat: dict[str, Metric],
    extra: dict[str, _ExtraPollutant],
    ref: dict[str, tuple[float, str]],
    problems: list[FieldError],
) -> None:
    """The limits of every limit set (and their source types' reference O2) and of every override."""
    for i, ls in enumerate(lim.limit_sets):
        for st, per in ls.limits.items():
            _check_limit_values(f"{name}.limit_sets[{i}].limits.{st}", per, cat, extra, problems)
            if st not in ref:
                problems.append(
                    FieldError(
                        f"{name}.limit_sets[{i}].limits.{st}", st, "no reference O2 for this source type"
                    )
                )
    for i, ov in enumerate(lim.overrides):
        _check_limit_values(f"{name}.overrides[{i}].limits", ov.limits, cat, extra, problems)


def _check_limit_ids(name: str, lim: _LimitsDoc, problems: list[FieldError]) -> None:
    ids = (
        [x.id for x in lim.limit_sets]
        + [x.id for x in lim.overrides]
        + [x.id for x in lim.special_limit_areas]
    )
    for dup in sorted({x for x in ids if ids.count(x) > 1}):
        problems.append(FieldError(f"{name}.id", dup, "limit set / override / area id used twice"))


def _load_limits(path: Path, problems: list[FieldError]) -> EmissionLimits | None:
    lim = _read_limits_doc(path, problems)
    if lim is None:
        return None
    cat = load_catalogue().by_name()
    extra = _extra_pollutants(path.name, lim, cat, problems)
    ref, ref_docs = _reference_o2(path.name, lim, problems)
    _check_limit_tables(path.name, lim, cat, extra, ref, problems)
    _check_limit_ids(path.name, lim, problems)
    return EmissionLimits(
        lim.version,
        ref,
        {x.id: x for x in lim.limit_sets},
        {x.id: x for x in lim.overrides},
        ref_docs,
        str(path),
        {x.id: x for x in lim.special_limit_areas},
        extra,
    )


def _check_emission_tables(
    p: str, params: EmissionParams, limits: EmissionLimits, problems: list[FieldError]
) -> None:
    """Each limit table the rule names exists and applies to the role it is named for."""
    for role in ("existing", "new", "special"):
        set_id = getattr(params.limit_tables, role)
        if set_id is None:
            continue
        ls = limits.limit_sets.get(set_id)
        if ls is None:
            problems.append(
                FieldError(f"{p}.limit_tables.{role}", set_id, f"unknown; known: {sorted(limits.limit_sets)}")
            )
        elif ls.applies_to != role:
            problems.append(
                FieldError(
                    f"{p}.limit_tables.{role}",
                    set_id,
                    f"limit set {ls.table} applies to {ls.applies_to!r}, not {role!r}",
                )
            )


def _check_emission_refs(
    p: str, params: EmissionParams, limits: EmissionLimits, problems: list[FieldError]
) -> None:
    """The rule's limit tables, special areas and overrides exist in the emission limits."""
    _check_emission_tables(p, params, limits, problems)
    for a in params.special_areas:
        if a not in limits.areas:
            problems.append(FieldError(f"{p}.special_areas", a, f"unknown; known: {sorted(limits.areas)}"))
    if params.special_areas and params.limit_tables.special is None:
        problems.append(FieldError(f"{p}.special_areas", params.special_areas, "needs limit_tables.special"))
    for o in params.overrides:
        if o not in limits.overrides:
            problems.append(FieldError(f"{p}.overrides", o, f"unknown; known: {sorted(limits.overrides)}"))


def _check_emission(
    p: str,
    params: EmissionParams,
    cat: dict[str, Metric],
    limits: EmissionLimits | None,
    problems: list[FieldError],
) -> None:
    for m in params.pollutants:
        if m not in cat or not cat[m].pollutant:
            problems.append(FieldError(f"{p}.pollutants", m, "not a pollutant metric of the catalogue"))
    problems.extend(load_flag_tables().check_excluded(f"{p}.excluded_flags", params.excluded_flags))
    if limits is not None:
        _check_emission_refs(p, params, limits, problems)


def _check_tamper(p: str, params: TamperParams, cat: dict[str, Metric], problems: list[FieldError]) -> None:
    for m in params.metrics:
        if m not in cat or cat[m].kind != "counter":
            problems.append(FieldError(f"{p}.metrics", m, "not a counter metric of the catalogue"))


def _clear_level_problem(p: str, params: ThresholdParams | RateParams) -> FieldError | None:
    """The clear level must lie on the safe side of the limit (or at it)."""
    c = params.clear_level
    if c is None:
        return None
    if isinstance(params, RateParams):
        return (
            FieldError(f"{p}.clear_level", c, f"must be ≤ limit {params.limit}") if c > params.limit else None
        )
    if params.op == "above" and c > params.limit:
        return FieldError(f"{p}.clear_level", c, f"must be ≤ limit {params.limit} for op above")
    if params.op == "below" and c < params.limit:
        return FieldError(f"{p}.clear_level", c, f"must be ≥ limit {params.limit} for op below")
    return None


def _check_metric_rule(
    p: str, params: ThresholdParams | RateParams, cat: dict[str, Metric], problems: list[FieldError]
) -> None:
    if params.metric not in cat:
        problems.append(FieldError(f"{p}.metric", params.metric, "not a metric of the catalogue"))
    for d in params.devices or ():
        if d.count("/") != 1:
            problems.append(FieldError(f"{p}.devices", d, "expected 'gateway/device'"))
    prob = _clear_level_problem(p, params)
    if prob is not None:
        problems.append(prob)


def _check_rule(
    i: int, doc: _RuleDoc, params: Any, limits: EmissionLimits | None, problems: list[FieldError]
) -> None:
    cat = load_catalogue().by_name()
    p = f"rules[{i}].params"
    if isinstance(params, EmissionParams):
        _check_emission(p, params, cat, limits, problems)
    elif isinstance(params, TamperParams):
        _check_tamper(p, params, cat, problems)
    elif isinstance(params, ThresholdParams | RateParams):
        _check_metric_rule(p, params, cat, problems)


def _read_rules_doc(rp: Path, problems: list[FieldError]) -> dict[Any, Any]:
    """The rule file as a mapping; raises ValidationReport (with the problems so far) when it is not one."""
    try:
        doc = yaml.safe_load(rp.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValidationReport(
            str(rp), [*problems, FieldError(str(rp), None, f"cannot read: {exc}")]
        ) from None
    if not isinstance(doc, dict):
        raise ValidationReport(
            str(rp), [*problems, FieldError("(file)", type(doc).__name__, "must be a mapping")]
        )
    return doc


def _default_messages(doc: dict[Any, Any], problems: list[FieldError]) -> dict[Any, Any]:
    """`messages` (kind → {zh, en}) with every entry and template checked; {} when it is no mapping."""
    messages = doc.get("messages") or {}
    if not isinstance(messages, dict):
        problems.append(FieldError("messages", messages, "must be a mapping kind → {zh, en}"))
        return {}
    for key, m in messages.items():
        if not isinstance(m, dict) or set(m) != {"zh", "en"}:
            problems.append(FieldError(f"messages.{key}", m, "must have exactly zh and en"))
            continue
        for lang in ("zh", "en"):
            prob = _check_template(f"messages.{key}.{lang}", str(m[lang]))
            if prob:
                problems.append(prob)
    return messages


def _rule_messages(
    i: int, rd: _RuleDoc, params: Any, messages: dict[Any, Any], problems: list[FieldError]
) -> tuple[str | None, str | None]:
    """The rule's zh and en messages: its own (checked here) or the default of its kind or gap check."""
    msg_key = params.check if isinstance(params, GapParams) else rd.kind
    tmpl = messages.get(msg_key) if isinstance(messages.get(msg_key), dict) else None
    zh = rd.message_zh or (tmpl or {}).get("zh")
    en = rd.message_en or (tmpl or {}).get("en")
    for lang, text in (("zh", zh), ("en", en)):
        if not text:
            problems.append(
                FieldError(
                    f"rules[{i}].message_{lang}", None, f"no message and no default messages.{msg_key}"
                )
            )
        elif rd.message_zh if lang == "zh" else rd.message_en:
            prob = _check_template(f"rules[{i}].message_{lang}", text)
            if prob:
                problems.append(prob)
    return zh, en


def _load_rule(
    i: int,
    raw: Any,
    messages: dict[Any, Any],
    seen: set[str],
    limits: EmissionLimits | None,
    problems: list[FieldError],
) -> Rule | None:
    """Rule `i` of the file, checked; None when it is invalid (its problems added) or disabled."""
    try:
        rd = _RuleDoc.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_pyd_problems(f"rules[{i}]", exc))
        return None
    if rd.id in seen:
        problems.append(FieldError(f"rules[{i}].id", rd.id, "rule id used twice"))
    seen.add(rd.id)
    try:
        params = _PARAMS[rd.kind].model_validate(rd.params)
    except ValidationError as exc:
        problems.extend(_pyd_problems(f"rules[{i}].params", exc))
        return None
    _check_rule(i, rd, params, limits, problems)
    zh, en = _rule_messages(i, rd, params, messages, problems)
    if not rd.enabled:
        return None
    return Rule(
        rd.id,
        rd.kind,
        rd.version,
        rd.severity,
        tuple(rd.parks) if rd.parks is not None else None,
        params,
        str(zh),
        str(en),
        raw if isinstance(raw, dict) else {},
    )


def load_rules(rules_path: str | Path | None = None, limits_path: str | Path | None = None) -> RuleSet:
    """Load and validate the rule file and the emission limits; raises ValidationReport with every problem."""
    rp = Path(rules_path) if rules_path else _data_path("alert_rules.yaml")
    lp = Path(limits_path) if limits_path else _data_path("emission_limits.yaml")
    problems: list[FieldError] = []
    limits = _load_limits(lp, problems)
    doc = _read_rules_doc(rp, problems)
    version = doc.get("version")
    if type(version) is not int or version < 1:
        problems.append(FieldError("version", version, "rule-set version must be an integer ≥ 1"))
    messages = _default_messages(doc, problems)
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list):
        problems.append(FieldError("rules", raw_rules, "must be a list"))
        raw_rules = []
    for k in sorted(set(doc) - {"version", "messages", "rules"}):
        problems.append(FieldError(k, doc[k], "unknown top-level key"))
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_rules):
        rule = _load_rule(i, raw, messages, seen, limits, problems)
        if rule is not None:
            rules.append(rule)
    if problems or limits is None:
        raise ValidationReport(f"{rp.name} + {lp.name}", problems)
    assert isinstance(version, int)
    return RuleSet(version, tuple(rules), limits, str(rp))
