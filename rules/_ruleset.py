"""Rule sets: versioned data files with their sources, loaded and validated as one unit.

`load_rule_set(name)` reads rules/data/rule_sets/<name>.yaml and every component file it names,
validates each one, cross-checks them, and raises one RuleSetError listing every problem found
in every file (it never stops at the first).
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from parkpulse.errors import FieldError, ValidationReport, field_path
from rules._checks import CHECKS
from rules._figures import Figure, Strict, TextFigure

__all__ = [
    "DATA_DIR",
    "DEFAULT_RULE_SET",
    "CarrierCoef",
    "CoalFile",
    "EmissionFile",
    "GreenEdition",
    "GreenItem",
    "MuScheme",
    "RuleSet",
    "RuleSetError",
    "SmartFile",
    "TargetsFile",
    "UnitsFile",
    "list_rule_sets",
    "load_rule_set",
]

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_RULE_SET = "henan-2025"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")

# Firm indicators the 亩均 scheme may name (rules/_mu.py computes them).
MU_INDICATORS = {
    "mu_tax", "mu_added_value", "added_value_per_energy", "output_per_energy", "added_value_per_pollutant",
    "tax_per_pollutant", "labour_productivity", "rd_intensity", "tax_per_electricity",
}  # fmt: skip
GREEN_INDICATORS = {
    "unit_product_energy_kgce", "unit_product_carbon_kgco2", "water_reuse_rate", "unit_product_pollutant_kg",
    "output_value_per_mu",
}  # fmt: skip
SMART_INDICATORS = {"networking_rate", "auto_collection_rate", "oee", "energy_per_unit_change_pct"}
TARGET_INDICATORS = {
    "mu_tax_10k_cny_per_mu", "firms_at_mu_tax_target_pct", "energy_intensity_change_pct",
    "smart_transformation_coverage_pct", "clusters_at_100bn_cny", "green_factories", "smart_workshops",
    "green_parks", "smart_demonstration_parks",
}  # fmt: skip


class RuleSetError(ValidationReport):
    """Every problem of a rule set and its files, collected."""


# --- units ---------------------------------------------------------------------------------
class UnitDef(Strict):
    dimension: str
    factor: float = Field(gt=0)
    aliases: list[str] = Field(default_factory=list)


class UnitsFile(Strict):
    version: str
    source: str
    dimensions: dict[str, str]
    units: dict[str, UnitDef]


# --- GB/T 2589 -----------------------------------------------------------------------------
class CarrierCoef(Strict):
    base_unit: str
    dangliang: Figure | None = None
    dengjia_by_year: dict[str, Figure] | None = None
    pressure_mpa: Figure | None = None
    equivalences: dict[str, float] = Field(default_factory=dict)
    in_total: bool = True


class SteamTable(Strict):
    source: str
    verified: bool = True
    kgoe_per_kgce: float = Field(gt=0)
    table: list[tuple[float, float]]


class CoalFile(Strict):
    kind: Literal["coal_coefficients"]
    name: str
    version: str
    standard: str
    kgce_kj: Figure
    carriers: dict[str, CarrierCoef]
    steam_by_pressure: SteamTable | None = None


# --- carbon --------------------------------------------------------------------------------
class Grid(Strict):
    by_year: dict[int, Figure] = Field(default_factory=dict)
    default: Figure


class Fuel(Strict):
    base_unit: str
    ncv: Figure
    carbon: Figure
    oxidation: Figure


class DirectFactor(Figure):
    base_unit: str


class EmissionFile(Strict):
    kind: Literal["emission_factors"]
    name: str
    version: str
    grids: dict[str, Grid]
    fuels: dict[str, Fuel] = Field(default_factory=dict)
    direct: dict[str, DirectFactor] = Field(default_factory=dict)


# --- 亩均 ----------------------------------------------------------------------------------
class Scope(Strict):
    size_classes: list[Literal["above_scale", "below_scale"]]
    size_source: Figure | None = None
    min_years_in_production: Figure | None = None
    min_land_mu: Figure | None = None


class MuIndicator(Strict):
    weight: Figure
    benchmark: Figure | Literal["park_mean"]
    cap: float | None = Field(default=None, gt=0)
    missing: Literal["zero", "park_average"] = "zero"


class ClassMethod(Strict):
    method: Literal["two_stage", "percentile"]
    source: str = Field(min_length=3)
    params: dict[str, Any]


class MuScheme(Strict):
    kind: Literal["mu_scheme"]
    name: str
    version: str
    scope: Scope
    indicators: dict[str, MuIndicator]
    class_method: ClassMethod


# --- GB/T 36132 ----------------------------------------------------------------------------
class Thresholds(Strict):
    default: float | dict[str, float] | None = None
    by_industry: dict[str, float | dict[str, float]] = Field(default_factory=dict)
    source: str
    verified: bool = True


class GreenItem(Strict):
    id: str
    area: str
    kind: Literal["veto", "declared", "computed"]
    zh: str
    source: str | None = None
    points: Figure | None = None
    indicator: str | None = None
    check: str | None = None
    thresholds: Thresholds | None = None


class GreenEdition(Strict):
    kind: Literal["green_factory"]
    name: str
    edition: str
    version: str
    effective: date
    standard: str
    pass_score: Figure
    items: list[GreenItem]


# --- smart workshop ------------------------------------------------------------------------
class SmartIndicator(Strict):
    zh: str
    check: str
    params: dict[str, Figure]


class SmartFirm(Strict):
    min_passing_workshops: Figure


class SmartFile(Strict):
    kind: Literal["smart_workshop"]
    name: str
    version: str
    online_window_s: Figure
    indicators: dict[str, SmartIndicator]
    firm: SmartFirm


# --- targets -------------------------------------------------------------------------------
class Target(Strict):
    zh: str
    target: Figure | None = None
    unit: str | None = None
    threshold: Figure | None = None
    comparison: Literal["at_least", "at_most"]


class TargetsFile(Strict):
    kind: Literal["targets"]
    name: str
    version: str
    source: str
    indicators: dict[str, Target]
    history: list[dict[str, Any]] = Field(default_factory=list)


# --- the rule-set index --------------------------------------------------------------------
class Components(Strict):
    coal: str
    emission_factors: str
    mu_scheme: str
    green_factory: list[str]
    smart_workshop: str
    targets: str
    units: str = "units.yaml"


class Settings(Strict):
    grid: str
    intensity_basis: Literal["dangliang", "dengjia"] = "dangliang"
    productivity_basis: Literal["dangliang", "dengjia"] = "dengjia"
    green_factory_edition: str = "auto"
    intensity_target_pct: Figure


class RuleSetIndex(Strict):
    name: str
    version: str
    description: str | None = None
    province: str | None = None
    components: Components
    settings: Settings
    references: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("rule-set names are lowercase letters, digits, '.', '_' and '-'")
        return v


class RuleSet(Strict):
    """A loaded, validated rule set: everything an evaluation needs, with sources."""

    name: str
    version: str
    index: RuleSetIndex
    units: UnitsFile
    coal: CoalFile
    emissions: EmissionFile
    mu: MuScheme
    green: dict[str, GreenEdition]
    smart: SmartFile
    targets: TargetsFile
    files: dict[str, str]

    @property
    def settings(self) -> Settings:
        return self.index.settings

    def green_edition(self, year: int) -> GreenEdition:
        chosen = self.settings.green_factory_edition
        if chosen != "auto":
            return self.green[chosen]
        in_force = [e for e in self.green.values() if e.effective <= date(year, 12, 31)]
        pool = in_force or list(self.green.values())
        return max(pool, key=lambda e: e.effective)

    def describe(self) -> dict[str, object]:
        return {"rule_set": self.name, "version": self.version, "files": self.files}


def _read(path: Path, label: str, model: type[Strict], problems: list[FieldError]) -> Any:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(FieldError(label, str(path), "file not found"))
        return None
    except yaml.YAMLError as exc:
        problems.append(FieldError(label, str(path), f"not YAML: {exc}"))
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            problems.append(FieldError(field_path(err["loc"], label), err.get("input"), err["msg"]))
        return None


def list_rule_sets(data_dir: Path | None = None) -> list[str]:
    base = (data_dir or DATA_DIR) / "rule_sets"
    return sorted(p.stem for p in base.glob("*.yaml"))


def load_rule_set(name: str = DEFAULT_RULE_SET, data_dir: Path | None = None) -> RuleSet:
    """Load and validate a rule set by name; raises RuleSetError listing every problem."""
    base = data_dir or DATA_DIR
    problems: list[FieldError] = []
    if not _NAME.match(name):
        raise RuleSetError(name, [FieldError("rule_set", name, "not a rule-set name")])
    index_path = base / "rule_sets" / f"{name}.yaml"
    if not index_path.exists():
        known = ", ".join(list_rule_sets(base)) or "none"
        raise RuleSetError(name, [FieldError("rule_set", name, f"no such rule set (known: {known})")])
    index: RuleSetIndex | None = _read(index_path, f"rule_sets/{name}.yaml", RuleSetIndex, problems)
    if index is None:
        raise RuleSetError(f"rule set {name}", problems)
    if index.name != name:
        problems.append(FieldError(f"rule_sets/{name}.yaml.name", index.name, "must equal the file name"))
    c = index.components
    files = {"index": f"rule_sets/{name}.yaml", "units": c.units, "coal": c.coal,
             "emission_factors": c.emission_factors, "mu_scheme": c.mu_scheme, "smart_workshop": c.smart_workshop,
             "targets": c.targets}  # fmt: skip
    units = _read(base / c.units, c.units, UnitsFile, problems)
    coal = _read(base / c.coal, c.coal, CoalFile, problems)
    emis = _read(base / c.emission_factors, c.emission_factors, EmissionFile, problems)
    mu = _read(base / c.mu_scheme, c.mu_scheme, MuScheme, problems)
    smart = _read(base / c.smart_workshop, c.smart_workshop, SmartFile, problems)
    targets = _read(base / c.targets, c.targets, TargetsFile, problems)
    green: dict[str, GreenEdition] = {}
    for i, gpath in enumerate(c.green_factory):
        files[f"green_factory[{i}]"] = gpath
        ed = _read(base / gpath, gpath, GreenEdition, problems)
        if ed is not None:
            if ed.edition in green:
                problems.append(FieldError(f"{gpath}.edition", ed.edition, "edition listed twice"))
            green[ed.edition] = ed
    # cross-checks between files, all collected
    if units is not None:
        problems += _check_units(units, c.units)
    if coal is not None and units is not None:
        problems += _check_coal(coal, units, c.coal)
    if emis is not None:
        problems += _check_emissions(emis, index, units, c.emission_factors, coal)
    if mu is not None:
        problems += _check_mu(mu, c.mu_scheme)
    for gpath in c.green_factory:
        ed = next((e for e in green.values() if gpath.endswith(e.name + ".yaml")), None)
        if ed is not None:
            problems += _check_green(ed, gpath)
    if smart is not None:
        problems += _check_smart(smart, c.smart_workshop)
    if targets is not None:
        for key in targets.indicators:
            if key not in TARGET_INDICATORS:
                problems.append(FieldError(f"{c.targets}.indicators.{key}", key,
                                           f"unknown scorecard indicator (known: {sorted(TARGET_INDICATORS)})"))
    edition = index.settings.green_factory_edition
    if edition != "auto" and green and edition not in green:
        problems.append(FieldError(f"rule_sets/{name}.yaml.settings.green_factory_edition", edition,
                                   f"no such edition among the listed files ({sorted(green)})"))
    if problems:
        raise RuleSetError(f"rule set {name}", problems)
    assert units and coal and emis and mu and smart and targets  # for the type checker: no problems
    return RuleSet(name=index.name, version=index.version, index=index, units=units, coal=coal, emissions=emis,
                   mu=mu, green=green, smart=smart, targets=targets, files=files)


def _check_units(u: UnitsFile, label: str) -> list[FieldError]:
    out: list[FieldError] = []
    seen: dict[str, str] = {}
    for name, d in u.units.items():
        if d.dimension not in u.dimensions:
            out.append(FieldError(f"{label}.units.{name}.dimension", d.dimension, "unknown dimension"))
        for alias in [name, *d.aliases]:
            key = alias.replace(" ", "").casefold()
            if key in seen and seen[key] != name:
                out.append(FieldError(f"{label}.units.{name}.aliases", alias, f"alias also used by {seen[key]}"))
            seen[key] = name
    return out


def _check_coal(coal: CoalFile, units: UnitsFile, label: str) -> list[FieldError]:
    out: list[FieldError] = []
    for carrier, cc in coal.carriers.items():
        at = f"{label}.carriers.{carrier}"
        if cc.base_unit not in units.units:
            out.append(FieldError(f"{at}.base_unit", cc.base_unit, "unit not in units.yaml"))
        for eq in cc.equivalences:
            if eq not in units.units:
                out.append(FieldError(f"{at}.equivalences", eq, "unit not in units.yaml"))
        if carrier == "steam":
            if cc.pressure_mpa is None and cc.dangliang is None:
                out.append(FieldError(f"{at}", None, "steam needs pressure_mpa (with steam_by_pressure) or dangliang"))
            if cc.pressure_mpa is not None and coal.steam_by_pressure is None:
                out.append(FieldError(f"{label}.steam_by_pressure", None, "missing while steam gives pressure_mpa"))
        elif cc.dangliang is None:
            out.append(FieldError(f"{at}.dangliang", None, "a 当量值 coefficient is required"))
        elif cc.dangliang.value < 0:
            out.append(FieldError(f"{at}.dangliang.value", cc.dangliang.value, "must be >= 0"))
        if cc.dengjia_by_year is not None:
            for y, fig in cc.dengjia_by_year.items():
                if y != "default" and not y.isdigit():
                    out.append(FieldError(f"{at}.dengjia_by_year", y, "keys are years or 'default'"))
                if fig.value <= 0:
                    out.append(FieldError(f"{at}.dengjia_by_year.{y}.value", fig.value, "must be > 0"))
            if "default" not in cc.dengjia_by_year:
                out.append(FieldError(f"{at}.dengjia_by_year.default", None, "a default 等价值 is required"))
    for need in ("electricity", "natural_gas", "raw_coal", "diesel", "gasoline", "lpg", "fuel_oil", "coke", "steam",
                 "heat", "water"):  # fmt: skip
        if need not in coal.carriers:
            out.append(FieldError(f"{label}.carriers", need, "required carrier missing"))
    if coal.steam_by_pressure and not coal.steam_by_pressure.table:
        out.append(FieldError(f"{label}.steam_by_pressure.table", [], "empty"))
    return out


def _check_emissions(e: EmissionFile, index: RuleSetIndex, units: UnitsFile | None, label: str,
                     coal: CoalFile | None) -> list[FieldError]:  # fmt: skip
    out: list[FieldError] = []
    if index.settings.grid not in e.grids:
        out.append(FieldError("settings.grid", index.settings.grid, f"no such grid in {label} ({sorted(e.grids)})"))
    for name, fuel in e.fuels.items():
        if not 0 < fuel.oxidation.value <= 1:
            out.append(FieldError(f"{label}.fuels.{name}.oxidation.value", fuel.oxidation.value, "must be in (0, 1]"))
        if fuel.ncv.per_base is None:
            out.append(FieldError(f"{label}.fuels.{name}.ncv.per_base", None, "per_base (scale to the base unit) required"))
        if coal is not None and name in coal.carriers and coal.carriers[name].base_unit != fuel.base_unit:
            out.append(FieldError(f"{label}.fuels.{name}.base_unit", fuel.base_unit,
                                  f"differs from the coal file's {coal.carriers[name].base_unit}"))
    for name, d in e.direct.items():
        if coal is not None and name in coal.carriers and coal.carriers[name].base_unit != d.base_unit:
            out.append(FieldError(f"{label}.direct.{name}.base_unit", d.base_unit,
                                  f"differs from the coal file's {coal.carriers[name].base_unit}"))
    return out


def _check_mu(mu: MuScheme, label: str) -> list[FieldError]:
    out: list[FieldError] = []
    for key, ind in mu.indicators.items():
        if key not in MU_INDICATORS:
            out.append(FieldError(f"{label}.indicators.{key}", key, f"unknown indicator (known: {sorted(MU_INDICATORS)})"))
        if ind.weight.value < 0:
            out.append(FieldError(f"{label}.indicators.{key}.weight.value", ind.weight.value, "must be >= 0"))
        if isinstance(ind.benchmark, Figure) and ind.benchmark.value <= 0:
            out.append(FieldError(f"{label}.indicators.{key}.benchmark.value", ind.benchmark.value, "must be > 0"))
    p = mu.class_method.params
    at = f"{label}.class_method.params"
    if mu.class_method.method == "two_stage":
        for share in ("top_share", "a_share", "bottom_share", "c_share"):
            fig = p.get(share)
            try:
                f = Figure.model_validate(fig)
                if not 0 <= f.value <= 1:
                    out.append(FieldError(f"{at}.{share}.value", f.value, "a share is between 0 and 1"))
            except ValidationError as exc:
                out.append(FieldError(f"{at}.{share}", fig, f"a figure with value and source is required ({exc.errors()[0]['msg']})"))
        for key in ("a_rank_by", "c_rank_by", "c_rank_fallback"):
            val = p.get(key, [] if key == "c_rank_fallback" else None)
            if not isinstance(val, list) or (key != "c_rank_fallback" and not val):
                out.append(FieldError(f"{at}.{key}", val, "a non-empty list of indicators is required"))
                continue
            for ind_name in val:
                if ind_name not in MU_INDICATORS:
                    out.append(FieldError(f"{at}.{key}", ind_name, "unknown indicator"))
        extra = set(p) - {"top_share", "a_share", "a_rank_by", "bottom_share", "c_share", "c_rank_by", "c_rank_fallback",
                          "rounding"}  # fmt: skip
        for k in sorted(extra):
            out.append(FieldError(f"{at}.{k}", p[k], "unknown parameter of two_stage"))
    else:
        shares = p.get("shares")
        if not isinstance(shares, dict) or not shares:
            out.append(FieldError(f"{at}.shares", shares, "a mapping class -> share is required"))
        else:
            total = sum(float(v) for v in shares.values())
            if abs(total - 1.0) > 1e-9:
                out.append(FieldError(f"{at}.shares", shares, f"shares add up to {total}, not 1"))
            report_as = p.get("report_as", {}) or {}
            for cls in shares:
                final = report_as.get(cls, cls)
                if final not in ("A", "B", "C"):
                    out.append(FieldError(f"{at}.shares", cls, "each class must be A, B, C or be mapped to one by report_as"))
    rounding = p.get("rounding")
    if rounding is not None:
        try:
            r = TextFigure.model_validate(rounding)
            if r.value not in ("half_up", "floor", "ceil"):
                out.append(FieldError(f"{at}.rounding.value", r.value, "one of half_up, floor, ceil"))
        except ValidationError:
            out.append(FieldError(f"{at}.rounding", rounding, "a text figure with value and source is required"))
    return out


def _check_green(ed: GreenEdition, label: str) -> list[FieldError]:
    out: list[FieldError] = []
    ids: set[str] = set()
    total = 0.0
    for i, it in enumerate(ed.items):
        at = f"{label}.items[{i}]"
        if it.id in ids:
            out.append(FieldError(f"{at}.id", it.id, "duplicate item id"))
        ids.add(it.id)
        if it.kind == "veto":
            if it.points is not None:
                out.append(FieldError(f"{at}.points", it.points.value, "a veto item is not scored"))
            if not it.source:
                out.append(FieldError(f"{at}.source", None, "a veto item needs its source"))
            continue
        if it.points is None:
            out.append(FieldError(f"{at}.points", None, "a scored item needs points"))
        else:
            total += it.points.value
        if it.kind == "computed":
            if it.indicator not in GREEN_INDICATORS:
                out.append(FieldError(f"{at}.indicator", it.indicator, f"unknown indicator (known: {sorted(GREEN_INDICATORS)})"))
            if it.check not in CHECKS:
                out.append(FieldError(f"{at}.check", it.check, f"unknown check (known: {sorted(CHECKS)})"))
            elif it.thresholds is None:
                out.append(FieldError(f"{at}.thresholds", None, "a computed item needs thresholds"))
            else:
                need = CHECKS[it.check].params
                values = [("default", it.thresholds.default), *list(it.thresholds.by_industry.items())]
                for key, val in values:
                    if val is None:
                        continue
                    given = set(val) if isinstance(val, dict) else {"threshold"}
                    if given != set(need):
                        out.append(FieldError(f"{at}.thresholds.{key}", val, f"check {it.check} takes {list(need)}"))
    if abs(total - 100.0) > 1e-6:
        out.append(FieldError(f"{label}.items", total, "scored items' points must add up to 100"))
    return out


def _check_smart(s: SmartFile, label: str) -> list[FieldError]:
    out: list[FieldError] = []
    for key, ind in s.indicators.items():
        at = f"{label}.indicators.{key}"
        if key not in SMART_INDICATORS:
            out.append(FieldError(at, key, f"unknown indicator (known: {sorted(SMART_INDICATORS)})"))
        if ind.check not in CHECKS:
            out.append(FieldError(f"{at}.check", ind.check, f"unknown check (known: {sorted(CHECKS)})"))
        elif set(ind.params) != set(CHECKS[ind.check].params):
            out.append(FieldError(f"{at}.params", sorted(ind.params), f"check {ind.check} takes {list(CHECKS[ind.check].params)}"))
    return out
