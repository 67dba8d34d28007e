"""Meter profiles of the `dlt645` source: data identifiers mapped to catalogue metrics, as data
(one YAML per meter family in `PROFILES_DIR`), validated on load with every problem's path."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.sources.dlt645._bcd import ValueFormat, parse_format
from gateway.sources.dlt645._standard import standard
from parkpulse.catalogue import load_catalogue
from parkpulse.errors import ConfigError, FieldError, ValidationReport, field_path

__all__ = [
    "PROFILES_DIR",
    "Block",
    "Item",
    "Profile",
    "ProfileSource",
    "list_profiles",
    "load_profile",
    "parse_profile",
]

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
_ROOT = Path(__file__).resolve().parents[3]
_DI = re.compile(r"^[0-9A-Fa-f]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProfileSource(_Strict):
    document: str = Field(min_length=3, description="the standard or the maker's protocol document")
    edition: str = Field(min_length=1)
    url: str | None = None
    notes: str | None = None
    verified: bool = Field(description="true: checked against the document; false: to be checked")


class Item(_Strict):
    di: str = Field(description="data identifier as written in the standard, e.g. 00010000 or 9010")
    metric: str
    format: str = Field(description="the standard's data format, e.g. XXXXXX.XX")
    signed: bool = Field(default=False, description="the top bit of the most significant byte is the sign")
    unit: str
    scale: float = 1.0
    skip: int = Field(
        default=0, ge=0, le=16, description="bytes after the value to ignore (e.g. a demand's time)"
    )
    magnitude: bool = Field(default=False, description="send the absolute value (the sign marks a direction)")
    ratio: Literal["ct", "pt", "ctpt"] | None = None
    verified: bool = True
    note: str | None = None

    @property
    def value_format(self) -> ValueFormat:
        return parse_format(self.format, self.signed)

    @property
    def nbytes(self) -> int:
        return self.value_format.nbytes + self.skip


class Block(_Strict):
    di: str = Field(description="the block's data identifier (e.g. 0201FF00)")
    metrics: list[str] = Field(min_length=2, description="its items in reply order")


class Profile(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    manufacturer: str
    model: str
    edition: Literal["2007", "1997"]
    source: ProfileSource
    tariffs: dict[int, str] = Field(
        default_factory=dict, description="tariff number -> its name (informative)"
    )
    items: list[Item] = Field(min_length=1)
    blocks: list[Block] = Field(default_factory=list)

    def item(self, metric: str) -> Item:
        return next(i for i in self.items if i.metric == metric)


def _di_problem(at: str, di: str, di_bytes: int) -> FieldError | None:
    if not _DI.match(di) or len(di) != 2 * di_bytes:
        return FieldError(
            at, di, f"a DL/T 645 data identifier of {di_bytes} bytes ({2 * di_bytes} hex digits)"
        )
    return None


def _item_problems(at: str, it: Item, di_bytes: int) -> list[FieldError]:
    problems: list[FieldError] = []
    m = load_catalogue().by_name().get(it.metric)
    if m is None:
        problems.append(FieldError(f"{at}.metric", it.metric, "not a catalogue metric"))
    elif it.unit != m.unit:
        problems.append(FieldError(f"{at}.unit", it.unit, f"the catalogue unit of {it.metric} is {m.unit!r}"))
    bad = _di_problem(f"{at}.di", it.di, di_bytes)
    if bad:
        problems.append(bad)
    try:
        parse_format(it.format, it.signed)
    except ValueError as exc:
        problems.append(FieldError(f"{at}.format", it.format, str(exc)))
    if it.scale == 0:
        problems.append(FieldError(f"{at}.scale", it.scale, "must not be 0"))
    return problems


def profile_problems(p: Profile) -> list[FieldError]:
    """Catalogue names and units, data identifiers of the edition's size, formats, no duplicates, blocks of known items."""
    di_bytes = standard().rules(p.edition).di_bytes
    problems: list[FieldError] = []
    metrics: dict[str, int] = {}
    dis: dict[str, str] = {}
    for i, it in enumerate(p.items):
        at = f"items[{i}]"
        problems += _item_problems(at, it, di_bytes)
        if it.metric in metrics:
            problems.append(
                FieldError(f"{at}.metric", it.metric, f"already mapped by items[{metrics[it.metric]}]")
            )
        metrics.setdefault(it.metric, i)
        if it.di.upper() in dis:
            problems.append(FieldError(f"{at}.di", it.di, f"already read by {dis[it.di.upper()]}"))
        dis.setdefault(it.di.upper(), at)
    for j, b in enumerate(p.blocks):
        at = f"blocks[{j}]"
        bad = _di_problem(f"{at}.di", b.di, di_bytes)
        if bad:
            problems.append(bad)
        elif b.di.upper() in dis:
            problems.append(FieldError(f"{at}.di", b.di, f"already used by {dis[b.di.upper()]}"))
        dis.setdefault(b.di.upper(), at)
        for k, m in enumerate(b.metrics):
            if m not in metrics:
                problems.append(FieldError(f"{at}.metrics[{k}]", m, "no item of this profile maps it"))
    return problems


def parse_profile(raw: object, source: str) -> Profile:
    """Validate a profile document: the model's errors, then the cross-checks, each with its path and value."""
    try:
        prof = Profile.model_validate(raw)
    except ValidationError as exc:
        raise ValidationReport(
            source, [FieldError(field_path(err["loc"]), err.get("input"), err["msg"]) for err in exc.errors()]
        ) from None
    problems = profile_problems(prof)
    if problems:
        raise ValidationReport(source, problems)
    return prof


def _load_file(path: Path, shown: str) -> Profile:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{shown}: cannot read profile: {exc}") from None
    prof = parse_profile(raw, shown)
    if f"{prof.name}.yaml" != path.name:
        raise ConfigError(f"{shown}: name {prof.name!r} must equal the file name")
    return prof


@lru_cache(maxsize=1)
def _builtin() -> dict[str, Profile]:
    return {
        p.name: p
        for p in (_load_file(f, f.relative_to(_ROOT).as_posix()) for f in sorted(PROFILES_DIR.glob("*.yaml")))
    }


def list_profiles(extra_dirs: list[Path] | None = None) -> dict[str, Profile]:
    """Built-in profiles plus those in `extra_dirs` (a local profile overrides a built-in of the same name)."""
    out = dict(_builtin())
    for d in extra_dirs or []:
        for f in sorted(Path(d).glob("*.yaml")):
            prof = _load_file(f, str(f))
            out[prof.name] = prof
    return out


def load_profile(name: str, extra_dirs: list[Path] | None = None) -> Profile:
    profiles = list_profiles(extra_dirs)
    if name not in profiles:
        raise ConfigError(f"unknown DL/T 645 profile {name!r} (known: {', '.join(sorted(profiles))})")
    return profiles[name]
