"""Figures from standards: a value with its unit, its source and whether it was verified."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Figure", "Strict", "TextFigure"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Figure(Strict):
    """One number taken from a standard or a policy document.

    `verified: false` marks a configurable default for which no primary text was read.
    """

    value: float
    unit: str | None = None
    source: str = Field(min_length=3)
    verified: bool = True
    note: str | None = None
    per_base: float | None = None  # e.g. GJ/10^4 m3 -> 0.0001 per m3

    def cite(self) -> dict[str, object]:
        out: dict[str, object] = {"value": self.value, "source": self.source}
        if self.unit:
            out["unit"] = self.unit
        if not self.verified:
            out["verified"] = False
        if self.note:
            out["note"] = " ".join(self.note.split())
        return out


class TextFigure(Strict):
    value: str
    source: str = Field(min_length=3)
    verified: bool = True
    note: str | None = None
