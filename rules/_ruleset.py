"""Rule sets: versioned data files with their sources, loaded and validated as one unit.

`load_rule_set(name)` reads rules/data/rule_sets/<name>.yaml and every component file it names,
validates each one, cross-checks them, and raises one RuleSetError listing every problem found
in every file (it never stops at the first).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from importlib.util import find_spec
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
    "Unverified",
    "list_rule_sets",
    "load_rule_set",
    "unverified_figures",
]

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_RULE_SET = "henan-2025"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")

# Firm indicators the 亩均 scheme may name (rules/_mu.py computes them).
MU_INDICATORS = {
    "mu_tax",
    "mu_added_value",
    "mu_revenue",
    "mu_profit",
    "added_value_per_energy",
    "output_per_energy",
    "added_value_per_pollutant",
    "tax_per_pollutant",
    "labour_productivity",
    "rd_intensity",
    "tax_per_electricity",
}
GREEN_INDICATORS = {
    "unit_product_energy_kgce",
    "unit_product_carbon_kgco2",
    "water_reuse_rate",
    "unit_product_pollutant_kg",
    "output_value_per_mu",
}
SMART_INDICATORS = {"networking_rate", "auto_collection_rate", "oee", "energy_per_unit_change_pct"}
TARGET_INDICATORS = {
    "mu_tax_10k_cny_per_mu",
    "firms_at_mu_tax_target_pct",
    "energy_intensity_change_pct",
    "smart_transformation_coverage_pct",
    "clusters_at_100bn_cny",
    "green_factories",
    "smart_workshops",
    "green_parks",
    "smart_demonstration_parks",
}


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
    dengjia_by_year: dict[int, Figure] | None = None  # 等价值 per year (the year's coal rate of power supply)
    dengjia_default: Figure | None = None  # for a year without its own figure
    pressure_mpa: Figure | None = None
    equivalences: dict[str, float] = Field(default_factory=dict)
    in_total: bool = True


class SteamTable(Strict):
    source: str
    verified: bool = True
    note: str | None = None
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
    """One region's yearly series; a missing year falls back to the latest earlier value (then `fallback`)."""

    series: str = Field(min_length=3)
    by_year: dict[int, Figure]
    fallback: str | None = None


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
    other_factors: dict[str, Figure] = Field(default_factory=dict)  # reference only, never a fallback
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


class BonusItem(Strict):
    zh: str
    source: str = Field(min_length=3)
    scored: bool = False  # the engine has no data for it yet: listed, not scored


class MuScheme(Strict):
    kind: Literal["mu_scheme"]
    name: str
    version: str
    title: str = Field(min_length=2)
    title_en: str | None = None
    indicators_source: str | None = None
    scope: Scope
    indicators: dict[str, MuIndicator]
    bonus_items: list[BonusItem] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    class_method: ClassMethod

    def describe(self, file: str) -> dict[str, object]:
        """What a result's explanation (and the console's firm page) says about the scheme used."""
        out: dict[str, object] = {
            "name": self.name,
            "version": self.version,
            "title": self.title,
            "file": file,
            "class_method": self.class_method.method,
            "class_method_source": self.class_method.source,
        }
        if self.title_en:
            out["title_en"] = self.title_en
        if self.indicators_source:
            out["indicators_source"] = self.indicators_source
        return out


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
    data_dir: str = ""  # where the files were read (for `rules validate`)

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


def _read_index(name: str, base: Path, problems: list[FieldError]) -> RuleSetIndex:
    """The rule set's index file; raises RuleSetError when the name is bad or the file missing or unreadable."""
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
    return index


@dataclass
class _Parts:
    """The component files of a rule set as read (None: the file has problems, already recorded)."""

    units: UnitsFile | None
    coal: CoalFile | None
    emissions: EmissionFile | None
    mu: MuScheme | None
    smart: SmartFile | None
    targets: TargetsFile | None
    green: dict[str, GreenEdition]


def _read_parts(base: Path, c: Components, files: dict[str, str], problems: list[FieldError]) -> _Parts:
    """Read every component file named by the index; each green-factory file is added to `files`."""
    parts = _Parts(
        units=_read(base / c.units, c.units, UnitsFile, problems),
        coal=_read(base / c.coal, c.coal, CoalFile, problems),
        emissions=_read(base / c.emission_factors, c.emission_factors, EmissionFile, problems),
        mu=_read(base / c.mu_scheme, c.mu_scheme, MuScheme, problems),
        smart=_read(base / c.smart_workshop, c.smart_workshop, SmartFile, problems),
        targets=_read(base / c.targets, c.targets, TargetsFile, problems),
        green={},
    )
    for i, gpath in enumerate(c.green_factory):
        files[f"green_factory[{i}]"] = gpath
        ed = _read(base / gpath, gpath, GreenEdition, problems)
        if ed is not None:
            if ed.edition in parts.green:
                problems.append(FieldError(f"{gpath}.edition", ed.edition, "edition listed twice"))
            parts.green[ed.edition] = ed
    return parts


def _cross_checks(index: RuleSetIndex, name: str, p: _Parts) -> list[FieldError]:
    """Checks within and between the files that were read, all collected."""
    c = index.components
    out: list[FieldError] = []
    if p.units is not None:
        out += _check_units(p.units, c.units)
    if p.coal is not None and p.units is not None:
        out += _check_coal(p.coal, p.units, c.coal)
    if p.emissions is not None:
        out += _check_emissions(p.emissions, index, p.units, c.emission_factors, p.coal)
    if p.mu is not None:
        out += _check_mu(p.mu, c.mu_scheme)
    for gpath in c.green_factory:
        ed = next((e for e in p.green.values() if gpath.endswith(e.name + ".yaml")), None)
        if ed is not None:
            out += _check_green(ed, gpath)
    if p.smart is not None:
        out += _check_smart(p.smart, c.smart_workshop)
    if p.targets is not None:
        out += _check_targets(p.targets, c.targets)
    edition = index.settings.green_factory_edition
    if edition != "auto" and p.green and edition not in p.green:
        out.append(
            FieldError(
                f"rule_sets/{name}.yaml.settings.green_factory_edition",
                edition,
                f"no such edition among the listed files ({sorted(p.green)})",
            )
        )
    return out


def _check_targets(targets: TargetsFile, label: str) -> list[FieldError]:
    return [
        FieldError(
            f"{label}.indicators.{key}",
            key,
            f"unknown scorecard indicator (known: {sorted(TARGET_INDICATORS)})",
        )
        for key in targets.indicators
        if key not in TARGET_INDICATORS
    ]


def load_rule_set(name: str = DEFAULT_RULE_SET, data_dir: Path | None = None) -> RuleSet:
    """Load and validate a rule set by name; raises RuleSetError listing every problem."""
    base = data_dir or DATA_DIR
    problems: list[FieldError] = []
    index = _read_index(name, base, problems)
    c = index.components
    files = {
        "index": f"rule_sets/{name}.yaml",
        "units": c.units,
        "coal": c.coal,
        "emission_factors": c.emission_factors,
        "mu_scheme": c.mu_scheme,
        "smart_workshop": c.smart_workshop,
        "targets": c.targets,
    }
    p = _read_parts(base, c, files, problems)
    problems += _cross_checks(index, name, p)
    if problems:
        raise RuleSetError(f"rule set {name}", problems)
    # for the type checker: no problems, so every file was read
    assert p.units and p.coal and p.emissions and p.mu and p.smart and p.targets
    return RuleSet(
        name=index.name,
        version=index.version,
        index=index,
        units=p.units,
        coal=p.coal,
        emissions=p.emissions,
        mu=p.mu,
        green=p.green,
        smart=p.smart,
        targets=p.targets,
        files=files,
        data_dir=str(base),
    )


@dataclass(frozen=True)
class Unverified:
    """A figure marked `verified: false` in a data file: where it is, its value and why."""

    file: str
    key: str
    value: object
    note: str
    source: str


def unverified_figures(rs: RuleSet) -> list[Unverified]:
    """Every `verified: false` figure in the rule set's files, then in the files its index references
    (e.g. the alert engine's emission limits, owned and loaded by `alerts/`: read here, never changed)."""
    base = Path(rs.data_dir) if rs.data_dir else DATA_DIR
    out: list[Unverified] = []
    seen: set[str] = set()
    rels = list(rs.files.values()) + [
        r for r in rs.index.references.values() if r.endswith((".yaml", ".yml"))
    ]
    for rel in rels:
        if rel in seen:
            continue
        seen.add(rel)
        try:
            raw = yaml.safe_load(_referenced_path(rel, base).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            out.append(Unverified(rel, "", None, f"could not be read: {exc}", ""))
            continue
        _walk_unverified(raw, rel, "", out)
    return out


def _referenced_path(ref: str, base: Path) -> Path:
    """A file named in a rule set: `package:path` is a file of another top-level package, found
    without importing its code (`alerts:data/emission_limits.yaml`); anything else is relative to
    the rule set's data folder."""
    package, sep, rel = ref.partition(":")
    if not sep:
        return base / ref
    spec = find_spec(package) if package.isidentifier() else None  # a top-level name: nothing is imported
    if spec is None or not spec.submodule_search_locations:
        raise OSError(f"no package {package!r} to read {rel} from")
    return Path(next(iter(spec.submodule_search_locations))) / rel


def _walk_unverified(obj: object, file: str, path: str, out: list[Unverified]) -> None:
    if isinstance(obj, dict):
        if obj.get("verified") is False:
            value = obj.get("value", obj.get("default"))
            if value is None and isinstance(obj.get("table"), list):
                value = f"table of {len(obj['table'])} rows"
            elif value is None:  # a record of several numbers (e.g. a limit set): its scalar numbers
                value = {
                    k: v for k, v in obj.items() if isinstance(v, int | float) and not isinstance(v, bool)
                } or None
            note = obj.get("note")
            out.append(
                Unverified(
                    file,
                    path,
                    value,
                    " ".join(str(note).split()) if note else "",
                    str(obj.get("source") or ""),
                )
            )
        for k, v in obj.items():
            _walk_unverified(v, file, f"{path}.{k}" if path else str(k), out)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _walk_unverified(v, file, f"{path}[{i}]", out)


def _check_units(u: UnitsFile, label: str) -> list[FieldError]:
    out: list[FieldError] = []
    seen: dict[str, str] = {}
    for name, d in u.units.items():
        if d.dimension not in u.dimensions:
            out.append(FieldError(f"{label}.units.{name}.dimension", d.dimension, "unknown dimension"))
        for alias in [name, *d.aliases]:
            key = alias.replace(" ", "").casefold()
            if key in seen and seen[key] != name:
                out.append(
                    FieldError(f"{label}.units.{name}.aliases", alias, f"alias also used by {seen[key]}")
                )
            seen[key] = name
    return out


_REQUIRED_CARRIERS = (
    "electricity",
    "natural_gas",
    "raw_coal",
    "diesel",
    "gasoline",
    "lpg",
    "fuel_oil",
    "coke",
    "steam",
    "heat",
    "water",
)


def _check_carrier_basis(carrier: str, cc: CarrierCoef, coal: CoalFile, label: str) -> list[FieldError]:
    """The 当量值 basis: steam by pressure (with the steam table) or a coefficient; any other carrier a coefficient >= 0."""
    at = f"{label}.carriers.{carrier}"
    out: list[FieldError] = []
    if carrier == "steam":
        if cc.pressure_mpa is None and cc.dangliang is None:
            out.append(
                FieldError(f"{at}", None, "steam needs pressure_mpa (with steam_by_pressure) or dangliang")
            )
        if cc.pressure_mpa is not None and coal.steam_by_pressure is None:
            out.append(
                FieldError(f"{label}.steam_by_pressure", None, "missing while steam gives pressure_mpa")
            )
    elif cc.dangliang is None:
        out.append(FieldError(f"{at}.dangliang", None, "a 当量值 coefficient is required"))
    elif cc.dangliang.value < 0:
        out.append(FieldError(f"{at}.dangliang.value", cc.dangliang.value, "must be >= 0"))
    return out


def _check_carrier_dengjia(cc: CarrierCoef, at: str) -> list[FieldError]:
    """等价值 by year (keys are years, figures > 0) and the default that must come with them."""
    out: list[FieldError] = []
    for y, fig in (cc.dengjia_by_year or {}).items():
        if not 1990 <= y <= 2200:
            out.append(FieldError(f"{at}.dengjia_by_year", y, "keys are years (1990-2200)"))
        if fig.value <= 0:
            out.append(FieldError(f"{at}.dengjia_by_year.{y}.value", fig.value, "must be > 0"))
    if cc.dengjia_by_year is not None and cc.dengjia_default is None:
        out.append(
            FieldError(f"{at}.dengjia_default", None, "a default 等价值 is required with dengjia_by_year")
        )
    if cc.dengjia_default is not None and cc.dengjia_default.value <= 0:
        out.append(FieldError(f"{at}.dengjia_default.value", cc.dengjia_default.value, "must be > 0"))
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
        out += _check_carrier_basis(carrier, cc, coal, label)
        out += _check_carrier_dengjia(cc, at)
    for need in _REQUIRED_CARRIERS:
        if need not in coal.carriers:
            out.append(FieldError(f"{label}.carriers", need, "required carrier missing"))
    if coal.steam_by_pressure is not None:
        out += _check_steam_table(coal.steam_by_pressure, f"{label}.steam_by_pressure.table")
    return out


def _check_steam_table(t: SteamTable, at: str) -> list[FieldError]:
    """Bands as [lower edge MPa, kgoe/t], strictly descending edges, the last edge 0 (every pressure has a band)."""
    if not t.table:
        return [FieldError(at, [], "empty")]
    out: list[FieldError] = []
    edges = [lo for lo, _ in t.table]
    for i, (lo, kgoe) in enumerate(t.table):
        if kgoe <= 0:
            out.append(FieldError(f"{at}[{i}]", [lo, kgoe], "kgoe/t must be > 0"))
        if i and lo >= edges[i - 1]:
            out.append(FieldError(f"{at}[{i}]", [lo, kgoe], "lower edges must be strictly descending"))
    if edges[-1] != 0:
        out.append(
            FieldError(f"{at}[{len(edges) - 1}]", t.table[-1], "the last band's lower edge must be 0 MPa")
        )
    return out


def _check_emissions(
    e: EmissionFile, index: RuleSetIndex, units: UnitsFile | None, label: str, coal: CoalFile | None
) -> list[FieldError]:
    out: list[FieldError] = []
    if index.settings.grid not in e.grids:
        out.append(
            FieldError("settings.grid", index.settings.grid, f"no such grid in {label} ({sorted(e.grids)})")
        )
    for name, grid in e.grids.items():
        if not grid.by_year:
            out.append(
                FieldError(f"{label}.grids.{name}.by_year", {}, "at least one year's factor is required")
            )
        if grid.fallback is not None and grid.fallback not in e.grids:
            out.append(
                FieldError(
                    f"{label}.grids.{name}.fallback", grid.fallback, f"no such grid ({sorted(e.grids)})"
                )
            )
        for y, fig in grid.by_year.items():
            if fig.value <= 0:
                out.append(FieldError(f"{label}.grids.{name}.by_year.{y}.value", fig.value, "must be > 0"))
    for name, fuel in e.fuels.items():
        if not 0 < fuel.oxidation.value <= 1:
            out.append(
                FieldError(f"{label}.fuels.{name}.oxidation.value", fuel.oxidation.value, "must be in (0, 1]")
            )
        if fuel.ncv.per_base is None:
            out.append(
                FieldError(
                    f"{label}.fuels.{name}.ncv.per_base", None, "per_base (scale to the base unit) required"
                )
            )
        if coal is not None and name in coal.carriers and coal.carriers[name].base_unit != fuel.base_unit:
            out.append(
                FieldError(
                    f"{label}.fuels.{name}.base_unit",
                    fuel.base_unit,
                    f"differs from the coal file's {coal.carriers[name].base_unit}",
                )
            )
        elif coal is not None and fuel.ncv.per_base is not None:
            out += _check_one_basis(name, fuel, coal, label)
    for name, d in e.direct.items():
        if coal is not None and name in coal.carriers and coal.carriers[name].base_unit != d.base_unit:
            out.append(
                FieldError(
                    f"{label}.direct.{name}.base_unit",
                    d.base_unit,
                    f"differs from the coal file's {coal.carriers[name].base_unit}",
                )
            )
    return out


ONE_BASIS_TOLERANCE = 0.005  # the coefficient tables round heating values to 4 digits of kgce (≈ 0.1 %)


def _check_one_basis(name: str, fuel: Fuel, coal: CoalFile, label: str) -> list[FieldError]:
    """Energy and CO2 of a fuel must rest on one heating value: NCV per base unit = kgce coefficient x kJ/kgce."""
    cc = coal.carriers.get(name)
    if cc is None or cc.dangliang is None:
        return []
    ncv_kj = fuel.ncv.value * (fuel.ncv.per_base or 0.0) * 1e6  # GJ per base unit → kJ
    coal_kj = cc.dangliang.value * coal.kgce_kj.value
    if coal_kj <= 0 or abs(ncv_kj / coal_kj - 1.0) <= ONE_BASIS_TOLERANCE:
        return []
    return [
        FieldError(
            f"{label}.fuels.{name}.ncv.value",
            fuel.ncv.value,
            f"heating value {ncv_kj:.6g} kJ per {fuel.base_unit} differs from the energy basis "
            f"{cc.dangliang.value} kgce x {coal.kgce_kj.value:g} kJ = {coal_kj:.6g} kJ by more than "
            f"{ONE_BASIS_TOLERANCE:.1%}: energy and CO2 must use one heating value",
        )
    ]


_TWO_STAGE_SHARES = ("top_share", "a_share", "bottom_share", "c_share")
_TWO_STAGE_RANKINGS = ("a_rank_by", "c_rank_by", "c_rank_fallback")
_TWO_STAGE_PARAMS = {*_TWO_STAGE_SHARES, *_TWO_STAGE_RANKINGS, "rounding"}


def _check_mu_indicators(mu: MuScheme, label: str) -> list[FieldError]:
    out: list[FieldError] = []
    for key, ind in mu.indicators.items():
        if key not in MU_INDICATORS:
            out.append(
                FieldError(
                    f"{label}.indicators.{key}", key, f"unknown indicator (known: {sorted(MU_INDICATORS)})"
                )
            )
        if ind.weight.value < 0:
            out.append(FieldError(f"{label}.indicators.{key}.weight.value", ind.weight.value, "must be >= 0"))
        if isinstance(ind.benchmark, Figure) and ind.benchmark.value <= 0:
            out.append(
                FieldError(f"{label}.indicators.{key}.benchmark.value", ind.benchmark.value, "must be > 0")
            )
    return out


def _check_two_stage(p: dict[str, Any], at: str) -> list[FieldError]:
    """Shares are figures in [0, 1], rankings lists of known indicators (the fallback may be empty), no other keys."""
    out: list[FieldError] = []
    for share in _TWO_STAGE_SHARES:
        fig = p.get(share)
        try:
            f = Figure.model_validate(fig)
            if not 0 <= f.value <= 1:
                out.append(FieldError(f"{at}.{share}.value", f.value, "a share is between 0 and 1"))
        except ValidationError as exc:
            out.append(
                FieldError(
                    f"{at}.{share}",
                    fig,
                    f"a figure with value and source is required ({exc.errors()[0]['msg']})",
                )
            )
    for key in _TWO_STAGE_RANKINGS:
        val = p.get(key, [] if key == "c_rank_fallback" else None)
        if not isinstance(val, list) or (key != "c_rank_fallback" and not val):
            out.append(FieldError(f"{at}.{key}", val, "a non-empty list of indicators is required"))
            continue
        out += [FieldError(f"{at}.{key}", n, "unknown indicator") for n in val if n not in MU_INDICATORS]
    for k in sorted(set(p) - _TWO_STAGE_PARAMS):
        out.append(FieldError(f"{at}.{k}", p[k], "unknown parameter of two_stage"))
    return out


def _check_percentile(p: dict[str, Any], at: str) -> list[FieldError]:
    """Shares of every tier add up to 1; each tier is A, B or C or reported as one."""
    shares = p.get("shares")
    if not isinstance(shares, dict) or not shares:
        return [FieldError(f"{at}.shares", shares, "a mapping class -> share is required")]
    out: list[FieldError] = []
    total = sum(float(v) for v in shares.values())
    if abs(total - 1.0) > 1e-9:
        out.append(FieldError(f"{at}.shares", shares, f"shares add up to {total}, not 1"))
    report_as = p.get("report_as", {}) or {}
    for cls in shares:
        final = report_as.get(cls, cls)
        if final not in ("A", "B", "C"):
            out.append(
                FieldError(f"{at}.shares", cls, "each class must be A, B, C or be mapped to one by report_as")
            )
    return out


def _check_rounding(p: dict[str, Any], at: str) -> list[FieldError]:
    rounding = p.get("rounding")
    if rounding is None:
        return []
    try:
        r = TextFigure.model_validate(rounding)
    except ValidationError:
        return [FieldError(f"{at}.rounding", rounding, "a text figure with value and source is required")]
    if r.value not in ("half_up", "floor", "ceil"):
        return [FieldError(f"{at}.rounding.value", r.value, "one of half_up, floor, ceil")]
    return []


def _check_mu(mu: MuScheme, label: str) -> list[FieldError]:
    p = mu.class_method.params
    at = f"{label}.class_method.params"
    out = _check_mu_indicators(mu, label)
    if mu.class_method.method == "two_stage":
        out += _check_two_stage(p, at)
    else:
        out += _check_percentile(p, at)
    out += _check_rounding(p, at)
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
                out.append(
                    FieldError(
                        f"{at}.indicator",
                        it.indicator,
                        f"unknown indicator (known: {sorted(GREEN_INDICATORS)})",
                    )
                )
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
                        out.append(
                            FieldError(f"{at}.thresholds.{key}", val, f"check {it.check} takes {list(need)}")
                        )
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
            out.append(
                FieldError(
                    f"{at}.params",
                    sorted(ind.params),
                    f"check {ind.check} takes {list(CHECKS[ind.check].params)}",
                )
            )
    return out
