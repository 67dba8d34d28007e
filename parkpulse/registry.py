"""The park registry file (park.yaml): validated models and an idempotent upsert into the store.

An import never re-parents an existing entry (a firm to another park, a gateway to another firm)
unless asked to: see `parkpulse._registry_sync`.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from parkpulse._registry_sync import Change, ImportPlan, MovesRefused, apply_import, plan_import
from parkpulse.catalogue import load_catalogue
from parkpulse.errors import FieldError, ValidationReport, field_path
from parkpulse.text import control_character
from parkpulse.wire import ID_PATTERN, reserved_gateway_id

if TYPE_CHECKING:  # the store's driver is a platform package; reading a park file does not need it
    import psycopg

__all__ = [
    "FUELS",
    "Change",
    "Cluster",
    "Device",
    "Firm",
    "Gateway",
    "ImportPlan",
    "MovesRefused",
    "ParkFile",
    "ParkInfo",
    "SpecialEmissionLimits",
    "Workshop",
    "apply_import",
    "import_registry",
    "load_park_file",
    "plan_import",
]

# Fuels of a monitored stack (GB 13271 has a column per fuel); a boiler's source_type is `<fuel>_boiler`.
FUELS = ("coal", "oil", "gas")

Id = str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: object) -> object:
        """NUL cannot be stored, an escape sequence in a name rewrites terminals: every text field is printable."""
        if isinstance(value, str) and (why := control_character(value)):
            raise ValueError(why)
        return value


class Device(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")
    kind: Literal["meter", "line", "cems", "sensor"]
    name: str | None = None
    profile: str | None = None
    workshop: str | None = None
    meter_level: int | None = Field(default=None, ge=1, le=3)
    carrier: str | None = None
    measures: str | None = None
    source_type: str | None = None  # CEMS: gas_boiler, oil_boiler, coal_boiler, industrial_kiln, …
    fuel: Literal["coal", "oil", "gas"] | None = None  # CEMS: required (picks the GB 13271 column)
    age_class: Literal["existing", "new"] | None = None  # CEMS: required (在用 → Table 1, 新建 → Table 2)
    poll_interval_s: float | None = Field(default=None, gt=0, le=86_400)  # stored as real: bounded
    rated_power_kw: float | None = Field(default=None, gt=0, le=10_000_000)
    enabled: bool = True

    @model_validator(mode="after")
    def _boiler_source_type(self) -> Device:
        """A CEMS stack with a fuel and no source type is a boiler of that fuel."""
        if self.kind == "cems" and self.source_type is None and self.fuel is not None:
            self.source_type = f"{self.fuel}_boiler"
        return self


class Gateway(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str | None = None
    devices: list[Device] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        problem = reserved_gateway_id(v)
        if problem:
            raise ValueError(problem)
        return v


class Workshop(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str
    name_en: str | None = None
    smart_declared: bool = False


class Firm(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str
    name_en: str | None = None
    credit_code: str | None = None
    cluster: str | None = None
    land_mu: float = Field(ge=0)
    industry: str | None = None
    size_class: Literal["above_scale", "below_scale"] = "above_scale"
    production_start: date | None = None
    workshops: list[Workshop] = Field(default_factory=list)
    gateways: list[Gateway] = Field(default_factory=list)


class Cluster(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str
    name_en: str | None = None
    industry: str | None = None


class SpecialEmissionLimits(_Strict):
    """Do special emission limits (GB 13271 Table 3) apply to the park's stacks, on what basis, from when."""

    applies: bool
    basis: str = Field(min_length=3)  # e.g. "MEE 2+26 cities notice, from 2018-10-01"
    since: date | None = None


class ParkInfo(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str
    name_en: str | None = None
    province: str | None = None
    city: str | None = None
    timezone: str = "Asia/Shanghai"
    land_mu: float | None = Field(default=None, ge=0)
    # not stated: the alert engine decides from the park's city (the limits file's special-limit areas)
    special_emission_limits: SpecialEmissionLimits | None = None


class ParkFile(_Strict):
    park: ParkInfo
    clusters: list[Cluster] = Field(default_factory=list)
    firms: list[Firm] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> ParkFile:
        problems = cross_check(self)
        if problems:
            raise ValueError("; ".join(str(p) for p in problems))
        return self


def cross_check(pf: ParkFile) -> list[FieldError]:
    """References between entries: clusters, workshops, unique ids, catalogue carriers."""
    problems: list[FieldError] = []
    clusters = {c.id for c in pf.clusters}
    carriers = load_catalogue().carriers()
    seen_firms: set[str] = set()
    seen_gw: set[str] = set()
    for i, f in enumerate(pf.firms):
        at = f"firms[{i}]"
        if f.id in seen_firms:
            problems.append(FieldError(f"{at}.id", f.id, "duplicate firm id"))
        seen_firms.add(f.id)
        if f.cluster and f.cluster not in clusters:
            problems.append(FieldError(f"{at}.cluster", f.cluster, "no such cluster in this file"))
        ws = {w.id for w in f.workshops}
        for j, g in enumerate(f.gateways):
            if g.id in seen_gw:
                problems.append(FieldError(f"{at}.gateways[{j}].id", g.id, "duplicate gateway id"))
            seen_gw.add(g.id)
            seen_dev: set[str] = set()
            for k, d in enumerate(g.devices):
                dat = f"{at}.gateways[{j}].devices[{k}]"
                if d.id in seen_dev:
                    problems.append(FieldError(f"{dat}.id", d.id, "duplicate device id on this gateway"))
                seen_dev.add(d.id)
                if d.workshop and d.workshop not in ws:
                    problems.append(
                        FieldError(f"{dat}.workshop", d.workshop, "no such workshop in this firm")
                    )
                if d.carrier and d.carrier not in carriers:
                    problems.append(
                        FieldError(
                            f"{dat}.carrier", d.carrier, f"unknown carrier (known: {sorted(carriers)})"
                        )
                    )
                problems += _stack_problems(dat, d)
    return problems


def _stack_problems(at: str, d: Device) -> list[FieldError]:
    """A CEMS stack needs its fuel and age class (they pick its emission limits); others must not have them."""
    out: list[FieldError] = []
    if d.kind != "cems":
        for name in ("fuel", "age_class"):
            if getattr(d, name) is not None:
                out.append(
                    FieldError(f"{at}.{name}", getattr(d, name), "only a CEMS stack (kind cems) has this")
                )
        return out
    if d.fuel is None:
        out.append(FieldError(f"{at}.fuel", None, f"a CEMS stack needs its fuel, one of {list(FUELS)}"))
    if d.age_class is None:
        out.append(
            FieldError(
                f"{at}.age_class",
                None,
                "a CEMS stack needs its age class: existing (在用) or new (新建, EIA approved from 2014-07-01)",
            )
        )
    st = d.source_type or ""
    if d.fuel is not None and st.endswith("_boiler") and st != f"{d.fuel}_boiler":
        out.append(
            FieldError(
                f"{at}.source_type",
                d.source_type,
                f"does not match fuel {d.fuel!r} (expected {d.fuel}_boiler)",
            )
        )
    return out


def load_park_file(path: str | Path) -> ParkFile:
    """Parse and validate; raises ValidationReport listing every bad entry by its path in the file."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValidationReport(str(p), [FieldError("(file)", str(p), f"not YAML: {exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ValidationReport(str(p), [FieldError("(file)", str(p), f"not UTF-8 text: {exc}")]) from None
    try:
        return ParkFile.model_validate(raw)
    except ValidationError as exc:
        problems: list[FieldError] = []
        for err in exc.errors():
            if err["type"] == "value_error" and not err["loc"]:
                # cross-check problems, already with their paths
                problems.extend(
                    FieldError(*_split_cross(m)) for m in err["msg"].removeprefix("Value error, ").split("; ")
                )
            else:
                problems.append(
                    FieldError(
                        field_path(err["loc"]), err.get("input"), err["msg"].removeprefix("Value error, ")
                    )
                )
        raise ValidationReport(str(p), problems) from None


def _split_cross(msg: str) -> tuple[str, object, str]:
    path, _, rest = msg.partition(": ")
    reason, _, got = rest.rpartition(" (got ")
    return path, got.rstrip(")"), reason


def import_registry(
    conn: psycopg.Connection, pf: ParkFile, *, move: bool = False, source: str | None = None
) -> dict[str, int]:
    """Upsert a validated park into the registry in one transaction. Returns counts per entity.

    Re-parenting an existing cluster, firm, workshop or gateway raises MovesRefused and writes
    nothing, unless `move`; allowed moves are recorded in `registry_audit`.
    """
    return apply_import(conn, pf, move=move, source=source).counts
