"""The HJ 212 tables of protocol.yaml (pollutant codes → metrics, CN codes, data flags) per edition."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from parkpulse.catalogue import load_catalogue
from parkpulse.errors import FieldError, ValidationReport, field_path
from parkpulse.wire import Quality

__all__ = ["EDITIONS", "PROTOCOL_FILE", "Commands", "EditionTable", "FlagEntry", "MetricEntry", "load_tables"]

PROTOCOL_FILE = Path(__file__).resolve().parent / "protocol.yaml"
EDITIONS = ("2017", "2025")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricEntry(_Strict):
    measured: str
    converted: str | None = None
    factor: float = 1.0
    name: str
    verified: bool


class FlagEntry(_Strict):
    cems_flag: int = Field(ge=0)
    quality: Literal["good", "manual", "uncertain", "bad"]
    severity: int = Field(ge=0)

    @property
    def quality_code(self) -> int:
        return int(Quality[self.quality.upper()])


class Commands(_Strict):
    real_time: int
    minute: int
    hour: int
    day: int
    request_answer: int
    execute_result: int
    data_ack: int
    notify_ack: int


class EditionTable(_Strict):
    standard: str
    version_bits: int = Field(ge=0, le=63)
    reply_st: int
    source: str
    verified: bool
    note: str | None = None
    metrics: dict[str, MetricEntry]
    legacy_metrics: dict[str, MetricEntry] = Field(default_factory=dict)
    commands: Commands
    flags: dict[str, FlagEntry]

    def metric_entry(self, code: str) -> MetricEntry | None:
        return self.metrics.get(code) or self.legacy_metrics.get(code)


class _Framing(_Strict):
    source: str
    verified: bool
    note: str | None = None
    max_segment_2017: int


class _ProtocolFile(_Strict):
    version: Literal[1]
    framing: _Framing
    editions: dict[Literal["2017", "2025"], EditionTable]


def _problems(doc: _ProtocolFile) -> list[FieldError]:
    names = {m.name for m in load_catalogue().metrics}
    out: list[FieldError] = []
    for ed, t in doc.editions.items():
        for group in ("metrics", "legacy_metrics"):
            for code, m in getattr(t, group).items():
                for kind in ("measured", "converted"):
                    v = getattr(m, kind)
                    if v is not None and v not in names:
                        out.append(
                            FieldError(f"editions.{ed}.{group}.{code}.{kind}", v, "not a catalogue metric")
                        )
        if "N" not in t.flags:
            out.append(FieldError(f"editions.{ed}.flags", sorted(t.flags), "the normal flag N is missing"))
    missing = set(EDITIONS) - set(doc.editions)
    if missing:
        out.append(FieldError("editions", sorted(doc.editions), f"editions {sorted(missing)} missing"))
    return out


@lru_cache(maxsize=4)
def load_tables(path: Path = PROTOCOL_FILE) -> dict[str, EditionTable]:
    """Every edition's table, checked against the catalogue; ValidationReport with every problem."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        doc = _ProtocolFile.model_validate(raw)
    except ValidationError as exc:
        raise ValidationReport(
            str(path),
            [FieldError(field_path(e["loc"]), e.get("input"), e["msg"]) for e in exc.errors()],
        ) from None
    problems = _problems(doc)
    if problems:
        raise ValidationReport(str(path), problems)
    return {str(k): v for k, v in doc.editions.items()}
