"""The period a report covers: a calendar month (`2026-11`) or a calendar year (`2026`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from reports.errors import ReportInputError

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_YEAR = re.compile(r"^(\d{4})$")


@dataclass(frozen=True)
class Period:
    """`month` is None for a yearly report. Days are civil days in the park's time zone."""

    year: int
    month: int | None = None

    @property
    def kind(self) -> str:
        return "year" if self.month is None else "month"

    @property
    def start(self) -> date:
        return date(self.year, self.month or 1, 1)

    @property
    def end(self) -> date:
        """The first day after the period."""
        if self.month is None:
            return date(self.year + 1, 1, 1)
        return date(self.year + (self.month == 12), self.month % 12 + 1, 1)

    @property
    def key(self) -> str:
        return str(self.year) if self.month is None else f"{self.year}-{self.month:02d}"

    def label(self, lang: str) -> str:
        if lang == "zh":
            return f"{self.year}年" if self.month is None else f"{self.year}年{self.month}月"
        return self.key

    def previous_month(self) -> Period:
        m = self.month or 1
        return Period(self.year - (m == 1), 12 if m == 1 else m - 1)


def parse_period(text: str, field: str = "period") -> Period:
    """`2026-11` (a month) or `2026` (a year); anything else is refused naming the field."""
    s = text.strip()
    m = _MONTH.match(s)
    if m:
        year, month = int(m.group(1)), int(m.group(2))
        if not 1 <= month <= 12:
            raise ReportInputError(field, text, "month must be 01 to 12 (format YYYY-MM)")
    elif (y := _YEAR.match(s)) is not None:
        year, month = int(y.group(1)), 0
    else:
        raise ReportInputError(field, text, "expected YYYY-MM for a month or YYYY for a year")
    if not 2000 <= year <= 2100:
        raise ReportInputError(field, text, "year must be between 2000 and 2100")
    return Period(year, month or None)
