"""HJ 212 data flags per edition of the standard (2017, 2025), as data: data/hj212_flags.yaml.

A CEMS sends the flag of each minute as the catalogue metric `cems_flag`, an integer code whose
letter is the same in every edition (new letters get new codes). Which letters invalidate a minute
is resolved per edition: by the emission rule's `excluded_flags` (one list for every edition, or
one list per edition) or, without it, by the edition's defaults (`invalidates: true`). A device's
logger speaks the edition of its gateway profile (the data file's `profiles`), else the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from parkpulse.catalogue import load_catalogue
from parkpulse.errors import FieldError, ValidationReport

__all__ = ["Edition", "Flag", "FlagTables", "device_excluded_flags", "load_flag_tables"]

_CATALOGUE_METRIC = "cems_flag"
# an excluded_flags value: one list for every edition, one list per edition, or None (defaults)
ExcludedSpec = list[str] | dict[str, list[str]] | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Command(_Strict):
    code: int = Field(ge=1000, le=9999)
    zh: str
    verified: bool | None = None


class Flag(_Strict):
    code: int = Field(ge=0, le=32767)
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)
    invalidates: bool
    verified: bool | None = None  # None: the edition's `verified`
    note: str | None = None


class Edition(_Strict):
    standard: str = Field(min_length=3)
    title: str
    issued: date
    in_force: date
    replaces: str | None = None
    replaced_by: str | None = None
    source: str = Field(min_length=3)
    verified: bool
    note: str | None = None
    commands: dict[str, _Command] = Field(default_factory=dict)
    flags: dict[str, Flag] = Field(min_length=1)

    def flag_verified(self, letter: str) -> bool:
        f = self.flags[letter]
        return self.verified if f.verified is None else f.verified


class _Doc(_Strict):
    version: int = Field(ge=1)
    default_edition: str
    profiles: dict[str, str] = Field(default_factory=dict)
    editions: dict[str, Edition] = Field(min_length=1)


@dataclass(frozen=True)
class FlagTables:
    version: int
    default_edition: str
    profiles: Mapping[str, str]
    editions: Mapping[str, Edition]
    path: str

    def edition_of_profile(self, profile: str | None) -> str:
        """The edition a device with this gateway profile speaks (the default for unknown profiles)."""
        return self.profiles.get(profile or "", self.default_edition)

    def codes(self, edition: str | None = None) -> dict[str, int]:
        """letter → catalogue code of one edition (the default edition when None)."""
        return {k: f.code for k, f in self.editions[edition or self.default_edition].flags.items()}

    def letters(self) -> dict[int, str]:
        """catalogue code → letter, over every edition (a code means one letter in all of them)."""
        return {f.code: k for e in self.editions.values() for k, f in e.flags.items()}

    def default_excluded(self, edition: str) -> frozenset[str]:
        return frozenset(k for k, f in self.editions[edition].flags.items() if f.invalidates)

    def excluded(self, spec: ExcludedSpec, edition: str) -> frozenset[str]:
        """The letters that invalidate a minute for a logger speaking `edition`.

        A list applies to every edition (letters an edition does not have simply never occur in
        it); a mapping gives each edition its list, and an edition it leaves out keeps its defaults.
        """
        if spec is None:
            return self.default_excluded(edition)
        if isinstance(spec, dict):
            return frozenset(spec[edition]) if edition in spec else self.default_excluded(edition)
        return frozenset(spec)

    def check_excluded(self, path: str, spec: ExcludedSpec) -> list[FieldError]:
        """Problems of an `excluded_flags` value, each naming its field and value."""
        out: list[FieldError] = []
        if spec is None:
            return out
        per: list[tuple[str, str | None, list[str]]] = []
        if isinstance(spec, dict):
            for ed, letters in spec.items():
                if ed not in self.editions:
                    out.append(
                        FieldError(
                            f"{path}.{ed}", ed, f"unknown HJ 212 edition; known: {sorted(self.editions)}"
                        )
                    )
                    continue
                per.append((f"{path}.{ed}", ed, letters))
        else:
            per.append((path, None, spec))
        for p, one, listed in per:
            known = (
                set(self.editions[one].flags) if one else {k for e in self.editions.values() for k in e.flags}
            )
            where = f"HJ 212-{one}" if one else "any HJ 212 edition"
            for letter in listed:
                if letter not in known:
                    out.append(FieldError(p, letter, f"not a data flag of {where} {sorted(known)}"))
                elif letter == "N":
                    out.append(FieldError(p, letter, "N (normal) cannot be excluded"))
        return out

    def unverified(self) -> list[str]:
        """One line per figure not checked against the primary text (for listings)."""
        out = []
        for e in self.editions.values():
            bad = [k for k in e.flags if not e.flag_verified(k)]
            if bad:
                out.append(f"{e.standard} data flags {' '.join(bad)}: {e.note or 'unverified'}")
            cmds = [f"{k} {c.code}" for k, c in e.commands.items() if c.verified is False]
            if cmds:
                out.append(f"{e.standard} command codes {', '.join(cmds)}: unverified")
        return out


def _data_path() -> Path:
    return Path(str(resources.files("alerts").joinpath("data", "hj212_flags.yaml")))


def _problems(name: str, doc: _Doc) -> list[FieldError]:
    out: list[FieldError] = []
    if doc.default_edition not in doc.editions:
        out.append(
            FieldError(
                f"{name}.default_edition",
                doc.default_edition,
                f"unknown edition; known: {sorted(doc.editions)}",
            )
        )
    for prof, ed in doc.profiles.items():
        if ed not in doc.editions:
            out.append(
                FieldError(f"{name}.profiles.{prof}", ed, f"unknown edition; known: {sorted(doc.editions)}")
            )
    metric = load_catalogue().by_name().get(_CATALOGUE_METRIC)
    states = dict(metric.states or {}) if metric is not None else {}
    code_letter: dict[int, tuple[str, str]] = {}
    letter_code: dict[str, tuple[int, str]] = {}
    for ed, e in doc.editions.items():
        seen: dict[int, str] = {}
        if "N" not in e.flags:
            out.append(FieldError(f"{name}.editions.{ed}.flags", sorted(e.flags), "must define N (normal)"))
        elif e.flags["N"].invalidates:
            out.append(
                FieldError(
                    f"{name}.editions.{ed}.flags.N.invalidates", True, "N (normal) cannot invalidate a minute"
                )
            )
        for letter, f in e.flags.items():
            p = f"{name}.editions.{ed}.flags.{letter}"
            if not (1 <= len(letter) <= 3 and letter.isascii() and letter.isalpha()):
                out.append(FieldError(p, letter, "a data flag is 1 to 3 ASCII letters"))
            if f.code in seen:
                out.append(
                    FieldError(f"{p}.code", f.code, f"code already used by {seen[f.code]} in this edition")
                )
            seen[f.code] = letter
            if f.code in code_letter and code_letter[f.code][0] != letter:
                other, oed = code_letter[f.code]
                out.append(
                    FieldError(
                        f"{p}.code", f.code, f"code means {other} in edition {oed}: a code keeps its letter"
                    )
                )
            if letter in letter_code and letter_code[letter][0] != f.code:
                oc, oed = letter_code[letter]
                out.append(
                    FieldError(
                        f"{p}.code",
                        f.code,
                        f"{letter} is code {oc} in edition {oed}: a letter keeps its code",
                    )
                )
            code_letter.setdefault(f.code, (letter, ed))
            letter_code.setdefault(letter, (f.code, ed))
            if states.get(f.code) != letter:
                out.append(
                    FieldError(
                        f"{p}.code",
                        f.code,
                        f"the catalogue metric {_CATALOGUE_METRIC} does not carry "
                        f"{f.code} = {letter} (its states: {states}); add it there first",
                    )
                )
    return out


def _load(path: Path) -> FlagTables:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValidationReport(str(path), [FieldError(str(path), None, f"cannot read: {exc}")]) from None
    try:
        doc = _Doc.model_validate(raw)
    except ValidationError as exc:
        problems = [
            FieldError(f"{path.name}.{'.'.join(str(x) for x in e['loc'])}", e.get("input"), e["msg"])
            for e in exc.errors()
        ]
        raise ValidationReport(str(path), problems) from None
    problems = _problems(path.name, doc)
    if problems:
        raise ValidationReport(str(path), problems)
    return FlagTables(doc.version, doc.default_edition, dict(doc.profiles), dict(doc.editions), str(path))


@lru_cache(maxsize=1)
def _shipped() -> FlagTables:
    return _load(_data_path())


def load_flag_tables(path: str | Path | None = None) -> FlagTables:
    """The validated flag tables (the shipped file, read once, by default); ValidationReport lists every problem."""
    return _load(Path(path)) if path else _shipped()


async def device_excluded_flags(
    conn: psycopg.AsyncConnection[Any], device_pk: int, spec: ExcludedSpec, tables: FlagTables | None = None
) -> frozenset[str]:
    """The excluded letters for one CEMS: its profile's edition, resolved against the rule's spec."""
    t = tables or load_flag_tables()
    cur = await conn.execute("SELECT profile FROM v_devices WHERE device_pk = %s", (device_pk,))
    row = await cur.fetchone()
    return t.excluded(spec, t.edition_of_profile(row[0] if row else None))
