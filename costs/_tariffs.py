"""The tariffs file (costs/data/tariffs.yaml): models, loading and validation.

`load_tariffs(path)` reads the file, validates every tariff version (schedules on 15-minute
boundaries without overlaps, one schedule per month, ratios for every period used, prices per
voltage class, versions that do not overlap) and raises one TariffError listing every problem with
the field's path and the value found. Nothing is half-loaded.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from parkpulse.errors import ConfigError, FieldError, ValidationReport, field_path

__all__ = [
    "DEFAULT_TARIFFS_FILE",
    "PERIODS",
    "SLOTS_PER_DAY",
    "ClassPrice",
    "MonthSchedule",
    "Ratios",
    "Tariff",
    "TariffError",
    "TariffVersion",
    "TariffsFile",
    "load_tariffs",
    "parse_span",
]

DEFAULT_TARIFFS_FILE = Path(__file__).resolve().parent / "data" / "tariffs.yaml"
PERIODS: tuple[str, ...] = ("sharp", "peak", "flat", "valley")
SLOTS_PER_DAY = 96  # 15-minute slots
_SPAN = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
Carrier = Literal["electricity", "natural_gas", "water", "steam", "heat", "compressed_air"]


class TariffError(ValidationReport, ConfigError):
    """The tariffs file has problems (each names its field and value)."""


def parse_span(text: str) -> tuple[int, int]:
    """'HH:MM-HH:MM' → (first slot, end slot exclusive), 15-minute slots of the day; ValueError if bad."""
    m = _SPAN.match(text)
    if not m:
        raise ValueError("expected 'HH:MM-HH:MM'")
    h0, m0, h1, m1 = (int(x) for x in m.groups())
    if m0 % 15 or m1 % 15 or m0 >= 60 or m1 >= 60:
        raise ValueError("minutes must be 00, 15, 30 or 45 (the cost is computed per 15 minutes)")
    start, end = h0 * 4 + m0 // 15, h1 * 4 + m1 // 15
    if not (0 <= start < end <= SLOTS_PER_DAY):
        raise ValueError("start must be before end, within 00:00-24:00 (split a span that crosses midnight)")
    return start, end


def _month(text: object) -> date:
    m = _MONTH.match(str(text))
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ValueError("expected a month 'YYYY-MM'")
    return date(int(m.group(1)), int(m.group(2)), 1)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MonthSchedule(_Strict):
    months: list[int] = Field(min_length=1)
    season: str | None = None
    sharp: list[str] = []
    peak: list[str] = []
    valley: list[str] = []
    flat: list[str] = []  # optional: every slot not listed is flat anyway

    @field_validator("months")
    @classmethod
    def _months(cls, v: list[int]) -> list[int]:
        bad = [m for m in v if not 1 <= m <= 12]
        if bad:
            raise ValueError(f"months are 1-12 (got {bad})")
        return v

    @field_validator("sharp", "peak", "valley", "flat")
    @classmethod
    def _spans(cls, v: list[str]) -> list[str]:
        for s in v:
            try:
                parse_span(s)
            except ValueError as exc:
                raise ValueError(f"{exc} (got {s!r})") from None
        return v

    def slots(self) -> list[str]:
        """The period of each of the 96 slots of a day (unlisted slots are flat); ValueError on overlap."""
        out: list[str | None] = [None] * SLOTS_PER_DAY
        for period in ("sharp", "peak", "valley", "flat"):
            for span in getattr(self, period):
                a, b = parse_span(span)
                for i in range(a, b):
                    if out[i] is not None:
                        raise ValueError(
                            f"{span} of {period} overlaps {out[i]} at slot {i // 4:02d}:{i % 4 * 15:02d}"
                        )
                    out[i] = period
        return [p or "flat" for p in out]


class Ratios(_Strict):
    sharp: float | None = Field(default=None, gt=0, le=10)
    peak: float = Field(gt=0, le=10)
    flat: float = Field(default=1.0, gt=0, le=10)
    valley: float = Field(gt=0, le=10)
    source: str = Field(min_length=1)
    verified: bool


class ClassPrice(_Strict):
    floating: float = Field(ge=0, le=100)
    fixed: float = Field(default=0.0, ge=0, le=100)


class EnergyPrices(_Strict):
    from_month: date
    source: str = Field(min_length=1)
    verified: bool
    classes: dict[str, ClassPrice] = Field(min_length=1)

    @field_validator("from_month", mode="before")
    @classmethod
    def _m(cls, v: object) -> date:
        return _month(v)


class TwoPartClass(_Strict):
    demand_yuan_per_kw_month: float | None = Field(default=None, ge=0, le=1000)
    capacity_yuan_per_kva_month: float | None = Field(default=None, ge=0, le=1000)


class TwoPart(_Strict):
    source: str = Field(min_length=1)
    verified: bool
    classes: dict[str, TwoPartClass] = Field(min_length=1)


class UnitPrice(_Strict):
    from_month: date
    price: float = Field(ge=0, le=100000)

    @field_validator("from_month", mode="before")
    @classmethod
    def _m(cls, v: object) -> date:
        return _month(v)


class TariffVersion(_Strict):
    version: str = Field(min_length=1, max_length=40)
    valid_from: date
    valid_to: date | None = None
    source: str = Field(min_length=1)
    verified: bool
    note: str | None = None
    # electricity (time of use)
    schedule: list[MonthSchedule] = []
    ratios: Ratios | None = None
    energy_prices: list[EnergyPrices] = []
    two_part: TwoPart | None = None
    # other carriers (one unit price)
    unit: str | None = None
    unit_prices: list[UnitPrice] = []

    def month_slots(self) -> dict[int, list[str]]:
        """month → the period of each 15-minute slot (validated: every month once, no overlaps)."""
        out: dict[int, list[str]] = {}
        for entry in self.schedule:
            slots = entry.slots()
            for m in entry.months:
                out[m] = slots
        return out


class Tariff(_Strict):
    id: str
    carrier: Carrier
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    region: str | None = None
    versions: list[TariffVersion] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError("a tariff id is lowercase letters, digits, '.', '_' or '-'")
        return v


class RegisterCheck(_Strict):
    tolerance_pct: float = Field(ge=0, le=100)
    tolerance_kwh: float = Field(ge=0, le=1e6)
    source: str = Field(min_length=1)


class VoltageClass(_Strict):
    zh: str
    en: str


class TariffsFile(_Strict):
    version: int
    voltage_classes: dict[str, VoltageClass] = Field(min_length=1)
    register_check: RegisterCheck
    tariffs: list[Tariff] = Field(min_length=1)
    checksum: str = ""  # of the file's bytes, set by load_tariffs
    path: str = ""

    def tariff(self, tariff_id: str) -> Tariff | None:
        return next((t for t in self.tariffs if t.id == tariff_id), None)


def _check_electricity(at: str, v: TariffVersion, classes: set[str]) -> list[FieldError]:
    problems: list[FieldError] = []
    if not v.schedule:
        problems.append(FieldError(f"{at}.schedule", None, "an electricity tariff needs a schedule"))
    seen: dict[int, int] = {}
    for i, entry in enumerate(v.schedule):
        try:
            entry.slots()
        except ValueError as exc:
            problems.append(FieldError(f"{at}.schedule[{i}]", entry.months, str(exc)))
        for m in entry.months:
            if m in seen:
                problems.append(
                    FieldError(f"{at}.schedule[{i}].months", m, f"month {m} is also in schedule[{seen[m]}]")
                )
            seen[m] = i
    missing = sorted(set(range(1, 13)) - set(seen))
    if v.schedule and missing:
        problems.append(FieldError(f"{at}.schedule", missing, "every month 1-12 needs a schedule"))
    if v.ratios is None:
        problems.append(FieldError(f"{at}.ratios", None, "an electricity tariff needs period ratios"))
    elif v.ratios.sharp is None and any(e.sharp for e in v.schedule):
        problems.append(
            FieldError(f"{at}.ratios.sharp", None, "the schedule has sharp hours but no sharp ratio")
        )
    problems += _check_months(f"{at}.energy_prices", [p.from_month for p in v.energy_prices], v)
    for i, p in enumerate(v.energy_prices):
        problems += [
            FieldError(f"{at}.energy_prices[{i}].classes", c, "unknown voltage class")
            for c in p.classes
            if c not in classes
        ]
    if v.two_part:
        problems += [
            FieldError(f"{at}.two_part.classes", c, "unknown voltage class")
            for c in v.two_part.classes
            if c not in classes
        ]
    return problems


def _check_months(at: str, months: list[date], v: TariffVersion) -> list[FieldError]:
    if not months:
        return [FieldError(at, None, "at least one month of prices is needed")]
    problems: list[FieldError] = []
    if months != sorted(set(months)):
        problems.append(
            FieldError(at, [m.strftime("%Y-%m") for m in months], "months must be distinct and in order")
        )
    first = date(v.valid_from.year, v.valid_from.month, 1)
    if months[0] > first:
        problems.append(
            FieldError(
                f"{at}[0].from_month", months[0].strftime("%Y-%m"), f"no price for {first:%Y-%m} (valid_from)"
            )
        )
    return problems


def _check_version(at: str, t: Tariff, v: TariffVersion, classes: set[str]) -> list[FieldError]:
    problems: list[FieldError] = []
    if v.valid_to is not None and v.valid_to <= v.valid_from:
        problems.append(FieldError(f"{at}.valid_to", str(v.valid_to), "must be after valid_from"))
    if t.carrier == "electricity":
        problems += _check_electricity(at, v, classes)
    else:
        if v.schedule or v.energy_prices or v.two_part:
            problems.append(
                FieldError(at, t.carrier, "only electricity tariffs have schedules and period prices")
            )
        if not v.unit:
            problems.append(
                FieldError(f"{at}.unit", None, f"a {t.carrier} tariff needs the unit of its price")
            )
        problems += _check_months(f"{at}.unit_prices", [p.from_month for p in v.unit_prices], v)
    return problems


def _check_overlaps(at: str, versions: list[TariffVersion]) -> list[FieldError]:
    problems: list[FieldError] = []
    names = [v.version for v in versions]
    for n in sorted({n for n in names if names.count(n) > 1}):
        problems.append(FieldError(f"{at}.versions", n, "version used twice"))
    ordered = sorted(enumerate(versions), key=lambda iv: iv[1].valid_from)
    for (_, a), (j, b) in itertools.pairwise(ordered):
        if a.valid_to is None or a.valid_to > b.valid_from:
            problems.append(
                FieldError(
                    f"{at}.versions[{j}].valid_from",
                    str(b.valid_from),
                    f"overlaps version {a.version!r} ({a.valid_from} to {a.valid_to or 'open'})",
                )
            )
    return problems


def validate(tf: TariffsFile) -> list[FieldError]:
    """Every cross-field problem of a parsed file."""
    classes = set(tf.voltage_classes)
    problems: list[FieldError] = []
    ids = [t.id for t in tf.tariffs]
    for n in sorted({n for n in ids if ids.count(n) > 1}):
        problems.append(FieldError("tariffs", n, "tariff id used twice"))
    for i, t in enumerate(tf.tariffs):
        problems += _check_overlaps(f"tariffs[{i}]", t.versions)
        for j, v in enumerate(t.versions):
            problems += _check_version(f"tariffs[{i}].versions[{j}]", t, v, classes)
    return problems


def _parse(raw: Any, source: str) -> TariffsFile:
    if not isinstance(raw, dict):
        raise TariffError(source, [FieldError("(file)", type(raw).__name__, "expected a mapping")])
    try:
        return TariffsFile.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            problems.append(FieldError(field_path(e["loc"]), e.get("input"), e["msg"]))
        raise TariffError(source, problems) from None


def load_tariffs(path: str | Path | None = None) -> TariffsFile:
    """Read and validate a tariffs file (default: the shipped costs/data/tariffs.yaml)."""
    p = Path(path) if path is not None else DEFAULT_TARIFFS_FILE
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"tariffs file {p}: {exc.strerror or exc}") from exc
    try:
        raw = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise TariffError(str(p), [FieldError("(file)", None, f"not valid YAML: {exc}")]) from None
    tf = _parse(raw, str(p))
    problems = validate(tf)
    if problems:
        raise TariffError(str(p), problems)
    return tf.model_copy(update={"checksum": hashlib.sha256(data).hexdigest()[:16], "path": str(p)})
