"""The park registry file (park.yaml): validated models and an idempotent upsert into the store."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

import psycopg
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from parkpulse.catalogue import load_catalogue
from parkpulse.errors import FieldError, ValidationReport, field_path
from parkpulse.wire import ID_PATTERN

__all__ = ["Cluster", "Device", "Firm", "Gateway", "ParkFile", "ParkInfo", "Workshop", "import_registry", "load_park_file"]

Id = str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Device(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")
    kind: Literal["meter", "line", "cems", "sensor"]
    name: str | None = None
    profile: str | None = None
    workshop: str | None = None
    meter_level: int | None = Field(default=None, ge=1, le=3)
    carrier: str | None = None
    measures: str | None = None
    source_type: str | None = None
    poll_interval_s: float | None = Field(default=None, gt=0)
    rated_power_kw: float | None = Field(default=None, gt=0)
    enabled: bool = True


class Gateway(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str | None = None
    devices: list[Device] = Field(default_factory=list)


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


class ParkInfo(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str
    name_en: str | None = None
    province: str | None = None
    city: str | None = None
    timezone: str = "Asia/Shanghai"
    land_mu: float | None = Field(default=None, ge=0)


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
                    problems.append(FieldError(f"{dat}.workshop", d.workshop, "no such workshop in this firm"))
                if d.carrier and d.carrier not in carriers:
                    problems.append(FieldError(f"{dat}.carrier", d.carrier, f"unknown carrier (known: {sorted(carriers)})"))
    return problems


def load_park_file(path: str | Path) -> ParkFile:
    """Parse and validate; raises ValidationReport listing every bad entry by its path in the file."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValidationReport(str(p), [FieldError("(file)", str(p), f"not YAML: {exc}")]) from None
    try:
        return ParkFile.model_validate(raw)
    except ValidationError as exc:
        problems: list[FieldError] = []
        for err in exc.errors():
            if err["type"] == "value_error" and not err["loc"]:
                # cross-check problems, already with their paths
                problems.extend(FieldError(*_split_cross(m)) for m in err["msg"].removeprefix("Value error, ").split("; "))
            else:
                problems.append(FieldError(field_path(err["loc"]), err.get("input"), err["msg"]))
        raise ValidationReport(str(p), problems) from None


def _split_cross(msg: str) -> tuple[str, object, str]:
    path, _, rest = msg.partition(": ")
    reason, _, got = rest.rpartition(" (got ")
    return path, got.rstrip(")"), reason


def import_registry(conn: psycopg.Connection, pf: ParkFile) -> dict[str, int]:
    """Upsert a validated park into the registry in one transaction. Returns counts per entity."""
    counts = {"parks": 1, "clusters": 0, "firms": 0, "workshops": 0, "gateways": 0, "devices": 0}
    p = pf.park
    with conn.transaction():
        conn.execute(
            """INSERT INTO parks (park_id, name, name_en, province, city, timezone, land_mu)
               VALUES (%s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (park_id) DO UPDATE SET name = excluded.name, name_en = excluded.name_en,
                 province = excluded.province, city = excluded.city, timezone = excluded.timezone,
                 land_mu = excluded.land_mu, updated_at = now()""",
            (p.id, p.name, p.name_en, p.province, p.city, p.timezone, p.land_mu),
        )
        for c in pf.clusters:
            conn.execute(
                """INSERT INTO clusters (cluster_id, park_id, name, name_en, industry) VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (cluster_id) DO UPDATE SET park_id = excluded.park_id, name = excluded.name,
                     name_en = excluded.name_en, industry = excluded.industry, updated_at = now()""",
                (c.id, p.id, c.name, c.name_en, c.industry),
            )
            counts["clusters"] += 1
        for f in pf.firms:
            conn.execute(
                """INSERT INTO firms (firm_id, park_id, cluster_id, name, name_en, credit_code, land_mu, industry,
                                      size_class, production_start)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (firm_id) DO UPDATE SET park_id = excluded.park_id, cluster_id = excluded.cluster_id,
                     name = excluded.name, name_en = excluded.name_en, credit_code = excluded.credit_code,
                     land_mu = excluded.land_mu, industry = excluded.industry, size_class = excluded.size_class,
                     production_start = excluded.production_start, updated_at = now()""",
                (f.id, p.id, f.cluster, f.name, f.name_en, f.credit_code, f.land_mu, f.industry, f.size_class,
                 f.production_start),
            )
            counts["firms"] += 1
            for w in f.workshops:
                conn.execute(
                    """INSERT INTO workshops (workshop_id, firm_id, name, name_en, smart_declared) VALUES (%s, %s, %s, %s, %s)
                       ON CONFLICT (workshop_id) DO UPDATE SET firm_id = excluded.firm_id, name = excluded.name,
                         name_en = excluded.name_en, smart_declared = excluded.smart_declared, updated_at = now()""",
                    (w.id, f.id, w.name, w.name_en, w.smart_declared),
                )
                counts["workshops"] += 1
            for g in f.gateways:
                conn.execute(
                    """INSERT INTO gateways (gateway_id, firm_id, name) VALUES (%s, %s, %s)
                       ON CONFLICT (gateway_id) DO UPDATE SET firm_id = excluded.firm_id, name = excluded.name,
                         updated_at = now()""",
                    (g.id, f.id, g.name),
                )
                counts["gateways"] += 1
                for d in g.devices:
                    conn.execute(
                        """INSERT INTO devices (gateway_id, device_id, workshop_id, name, kind, profile, meter_level,
                                                carrier, measures, source_type, poll_interval_s, rated_power_kw, enabled)
                           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                           ON CONFLICT (gateway_id, device_id) DO UPDATE SET workshop_id = excluded.workshop_id,
                             name = excluded.name, kind = excluded.kind, profile = excluded.profile,
                             meter_level = excluded.meter_level, carrier = excluded.carrier,
                             measures = excluded.measures, source_type = excluded.source_type,
                             poll_interval_s = excluded.poll_interval_s, rated_power_kw = excluded.rated_power_kw,
                             enabled = excluded.enabled, updated_at = now()""",
                        (g.id, d.id, d.workshop, d.name, d.kind, d.profile, d.meter_level, d.carrier, d.measures,
                         d.source_type, d.poll_interval_s, d.rated_power_kw, d.enabled),
                    )
                    counts["devices"] += 1
    return counts
