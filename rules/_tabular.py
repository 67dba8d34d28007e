"""Reading CSV and XLSX files into rows of text cells, with the row numbers people see."""

from __future__ import annotations

import csv
from pathlib import Path

from parkpulse.errors import FieldError, ValidationReport

__all__ = ["parse_bool", "parse_number", "read_table"]

_TRUE = {"1", "true", "yes", "y", "t", "是", "规上", "above_scale", "above"}
_FALSE = {"0", "false", "no", "n", "f", "否", "规下", "below_scale", "below"}


def read_table(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(headers, [(row number as shown in a spreadsheet, cells)]); blank rows are skipped."""
    if not path.exists():
        raise ValidationReport(str(path), [FieldError("file", str(path), "not found")])
    suffix = path.suffix.lower()
    rows: list[list[str]] = []
    if suffix in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        try:
            wb = load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many kinds for a broken file
            raise ValidationReport(str(path), [FieldError("file", str(path), f"not a readable xlsx file: {exc}")]) from None
        ws = wb.worksheets[0]
        for r in ws.iter_rows(values_only=True):
            rows.append(["" if v is None else _cell(v) for v in r])
        wb.close()
    elif suffix in (".csv", ".txt", ""):
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            text = path.read_text(encoding="gb18030")  # files saved by Excel on Chinese Windows
        rows = [list(r) for r in csv.reader(text.splitlines())]
    else:
        raise ValidationReport(str(path), [FieldError("file", str(path), "expected a .csv or .xlsx file")])
    if not rows:
        raise ValidationReport(str(path), [FieldError("file", str(path), "empty: no header row")])
    headers = [h.strip() for h in rows[0]]
    while headers and not headers[-1]:
        headers.pop()
    body = [(i + 2, r) for i, r in enumerate(rows[1:]) if any(c.strip() for c in r)]
    return headers, body


def _cell(v: object) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def parse_number(text: str) -> float:
    t = text.strip().replace("\u00a0", "")
    v = float(t)
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError("not a finite number")
    return v


def parse_bool(text: str) -> bool:
    t = text.strip().casefold()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise ValueError("expected true/false (1/0, yes/no, 是/否)")
