"""Reading CSV and XLSX files into rows of text cells, with the row numbers people see."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from parkpulse.errors import FieldError, ValidationReport

__all__ = ["AMOUNT_MAX", "out_of_range", "parse_bool", "parse_number", "read_table"]

# 10^15 (万元, tonnes, MWh…): far beyond any firm, and every later sum and ratio stays finite
AMOUNT_MAX = 1e15

_TRUE = {"1", "true", "yes", "y", "t", "是", "规上", "above_scale", "above"}
_FALSE = {"0", "false", "no", "n", "f", "否", "规下", "below_scale", "below"}


def read_table(path: Path, problems: list[FieldError]) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(headers, [(row number as shown in a spreadsheet, cells)]); blank rows are skipped.

    A file that cannot be read at all raises ValidationReport. Cells that cannot be read (an XLSX
    formula without a cached value) are appended to `problems`, named like `Sheet1!C4`, and left empty.
    """
    if not path.exists():
        raise ValidationReport(str(path), [FieldError("file", str(path), "not found")])
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        rows = _read_xlsx(path, problems)
    elif suffix in (".csv", ".txt", ""):
        rows = _read_csv(path)
    else:
        raise ValidationReport(str(path), [FieldError("file", str(path), "expected a .csv or .xlsx file")])
    if not rows:
        raise ValidationReport(str(path), [FieldError("file", str(path), "empty: no header row")])
    headers = [h.strip() for h in rows[0]]
    while headers and not headers[-1]:
        headers.pop()
    body = [(i + 2, r) for i, r in enumerate(rows[1:]) if any(c.strip() for c in r)]
    return headers, body


def _read_csv(path: Path) -> list[list[str]]:
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):  # gb18030: files saved by Excel on Chinese Windows
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise ValidationReport(str(path), [FieldError("file", str(path), "neither UTF-8 nor GB18030 text")])
    reader = csv.reader(text.splitlines())
    try:
        return [list(r) for r in reader]
    except csv.Error as exc:  # e.g. a field beyond the csv module's size limit
        raise ValidationReport(
            str(path), [FieldError(f"row {reader.line_num}", str(path), f"not CSV: {exc}")]
        ) from None


def _read_xlsx(path: Path, problems: list[FieldError]) -> list[list[str]]:
    """The first sheet's cells as text. A formula gives its cached value (what Excel or LibreOffice last
    computed); a formula without one (a file written by a program that does not compute formulas) is a
    problem, never a silent empty cell."""
    from openpyxl import load_workbook

    rows: list[list[str]] = []
    books = []
    try:
        values = load_workbook(path, read_only=True, data_only=True)
        books.append(values)
        formulas = load_workbook(path, read_only=True, data_only=False)
        books.append(formulas)
        if not values.worksheets:
            raise ValidationReport(str(path), [FieldError("file", str(path), "no worksheet")])
        sheet = values.worksheets[0]
        for vrow, frow in zip(sheet.iter_rows(), formulas.worksheets[0].iter_rows(), strict=True):
            cells: list[str] = []
            for v, f in zip(vrow, frow, strict=True):
                if f.data_type == "f" and v.value is None and v.data_type != "s":  # "s": cached empty text
                    problems.append(
                        FieldError(
                            f"{sheet.title}!{f.coordinate}",
                            f.value,
                            "formula without a cached value: open and save the file in Excel "
                            "or LibreOffice (which compute it), or type the value",
                        )
                    )
                cells.append("" if v.value is None else _cell(v.value))
            rows.append(cells)
    except ValidationReport:
        raise
    except Exception as exc:  # openpyxl raises many kinds for a broken file, also while reading rows
        raise ValidationReport(
            str(path), [FieldError("file", str(path), f"not a readable xlsx file: {exc}")]
        ) from None
    finally:
        for wb in books:
            wb.close()
    return rows


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


def out_of_range(v: float, most: float = AMOUNT_MAX, *, signed: bool = False) -> str | None:
    """Why a number cannot be stored and computed with: NaN/Infinity, negative (unless `signed`), or beyond `most`."""
    if isinstance(v, float) and not math.isfinite(v):
        return "must be a finite number"
    if v < 0 and not signed:
        return "must be >= 0"
    if abs(v) > most:
        return (
            f"out of range: at most {most:g}" if isinstance(most, float) else f"out of range: at most {most}"
        )
    return None


def parse_bool(text: str) -> bool:
    t = text.strip().casefold()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise ValueError("expected true/false (1/0, yes/no, 是/否)")
