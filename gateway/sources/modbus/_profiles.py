"""Device profiles of the `modbus` source: register maps as data files (one YAML per model), validated on load.

The built-in profiles are the `*.yaml` files in `PROFILES_DIR`; a config's `profiles_dir` adds more.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from parkpulse.catalogue import load_catalogue
from parkpulse.errors import ConfigError, FieldError, ValidationReport, field_path

__all__ = [
    "PROFILES_DIR",
    "WORDS",
    "DataType",
    "Profile",
    "ProfileSource",
    "Register",
    "catalogue_problems",
    "list_profiles",
    "load_profile",
    "load_profile_file",
    "profile_problems",
]

DataType = Literal["u16", "i16", "u32", "i32", "f32", "u64", "i64", "f64"]
Order = Literal["big", "little"]
Function = Literal["holding", "input"]
# the built-in profiles (the one place that names their folder)
PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
_ROOT = (
    Path(__file__).resolve().parents[3]
)  # the folder holding the gateway package; paths in messages start here
WORDS: dict[str, int] = {"u16": 1, "i16": 1, "u32": 2, "i32": 2, "f32": 2, "u64": 4, "i64": 4, "f64": 4}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProfileSource(_Strict):
    document: str = Field(min_length=3, description="the manufacturer's public register map")
    edition: str = Field(min_length=1)
    url: str | None = None
    notes: str | None = None


class Defaults(_Strict):
    function: Function = "holding"
    type: DataType = "f32"
    word_order: Order = "big"
    byte_order: Order = "big"


class Register(_Strict):
    metric: str
    address: int = Field(ge=0, le=65535, description="as printed in the map; see the profile's address_base")
    function: Function | None = None
    type: DataType | None = None
    word_order: Order | None = None
    byte_order: Order | None = None
    scale: float = 1.0
    offset: float = 0.0
    unit: str
    native_unit: str | None = None
    ratio: Literal["ct", "pt", "ctpt"] | None = Field(
        default=None, description="which instrument-transformer ratio of the device multiplies this value"
    )


class Profile(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    manufacturer: str
    model: str
    kind: Literal["meter", "cems", "sensor", "line"] = "meter"
    source: ProfileSource
    address_base: Literal[0, 1] = Field(
        description="0: addresses are PDU offsets; 1: 1-based register numbers"
    )
    max_gap: int = Field(
        default=16, ge=0, le=100, description="unused registers a coalesced request may span"
    )
    defaults: Defaults = Defaults()
    registers: list[Register] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Profile:
        problems = profile_problems(self)
        if problems:
            raise ValueError("; ".join(str(p) for p in problems))
        return self

    def resolved(self) -> list[ResolvedRegister]:
        d = self.defaults
        out = []
        for r in self.registers:
            out.append(
                ResolvedRegister(
                    metric=r.metric,
                    pdu=r.address - self.address_base,
                    function=r.function or d.function,
                    type=r.type or d.type,
                    word_order=r.word_order or d.word_order,
                    byte_order=r.byte_order or d.byte_order,
                    scale=r.scale,
                    offset=r.offset,
                    unit=r.unit,
                    ratio=r.ratio,
                )
            )
        return out


class ResolvedRegister(_Strict):
    """A register with the profile defaults applied and the PDU address computed."""

    metric: str
    pdu: int
    function: Function
    type: DataType
    word_order: Order
    byte_order: Order
    scale: float
    offset: float
    unit: str
    ratio: str | None

    @property
    def words(self) -> int:
        return WORDS[self.type]


def catalogue_problems(at: str, metric: str, unit: str) -> list[FieldError]:
    """A register's metric must be in the catalogue and read in the catalogue's unit."""
    m = load_catalogue().by_name().get(metric)
    if m is None:
        return [FieldError(f"{at}.metric", metric, "not a catalogue metric")]
    if unit != m.unit:
        return [FieldError(f"{at}.unit", unit, f"the catalogue unit of {metric} is {m.unit!r}")]
    return []


def profile_problems(p: Profile) -> list[FieldError]:
    """Catalogue names and units, addresses inside the register space, no overlaps, no duplicate metrics."""
    problems: list[FieldError] = []
    seen: dict[str, int] = {}
    spans: dict[str, list[tuple[int, int, int]]] = {"holding": [], "input": []}
    for i, r in enumerate(p.registers):
        at = f"registers[{i}]"
        problems += catalogue_problems(at, r.metric, r.unit)
        if r.metric in seen:
            problems.append(
                FieldError(f"{at}.metric", r.metric, f"already mapped by registers[{seen[r.metric]}]")
            )
        seen.setdefault(r.metric, i)
        pdu = r.address - p.address_base
        words = WORDS[r.type or p.defaults.type]
        if pdu < 0 or pdu + words > 65536:
            problems.append(
                FieldError(f"{at}.address", r.address, "outside the register space for this address_base")
            )
        if r.scale == 0:
            problems.append(FieldError(f"{at}.scale", r.scale, "must not be 0"))
        spans[r.function or p.defaults.function].append((pdu, pdu + words, i))
    for function, lst in spans.items():
        lst.sort()
        for (a0, a1, ai), (b0, _b1, bi) in itertools.pairwise(lst):
            if b0 < a1:
                problems.append(
                    FieldError(
                        f"registers[{bi}].address",
                        p.registers[bi].address,
                        f"overlaps registers[{ai}] ({function} {a0}..{a1 - 1})",
                    )
                )
    return problems


def parse_profile(raw: object, source: str) -> Profile:
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        problems: list[FieldError] = []
        for err in exc.errors():
            if not err["loc"] and err["type"] == "value_error":
                for msg in str(err["msg"]).removeprefix("Value error, ").split("; "):
                    path, _, reason = msg.partition(": ")
                    problems.append(FieldError(path, None, reason))
            else:
                problems.append(FieldError(field_path(err["loc"]), err.get("input"), err["msg"]))
        raise ValidationReport(source, problems) from None


def load_profile_file(path: str | Path) -> Profile:
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: cannot read profile: {exc}") from None
    return parse_profile(raw, str(p))


@lru_cache(maxsize=1)
def _builtin() -> dict[str, Profile]:
    out: dict[str, Profile] = {}
    for entry in sorted(PROFILES_DIR.glob("*.yaml")):
        shown = entry.relative_to(_ROOT).as_posix()
        prof = parse_profile(yaml.safe_load(entry.read_text(encoding="utf-8")), shown)
        if f"{prof.name}.yaml" != entry.name:
            raise ConfigError(f"{shown}: name {prof.name!r} must equal the file name")
        out[prof.name] = prof
    return out


def list_profiles(extra_dirs: list[Path] | None = None) -> dict[str, Profile]:
    """Built-in profiles plus those in `extra_dirs` (a local profile overrides a built-in of the same name)."""
    out = dict(_builtin())
    for d in extra_dirs or []:
        for f in sorted(Path(d).glob("*.yaml")):
            prof = load_profile_file(f)
            out[prof.name] = prof
    return out


def load_profile(name: str, extra_dirs: list[Path] | None = None) -> Profile:
    profiles = list_profiles(extra_dirs)
    if name not in profiles:
        raise ConfigError(f"unknown profile {name!r} (known: {', '.join(sorted(profiles))})")
    return profiles[name]
