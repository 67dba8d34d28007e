"""Firms' yearly economic data: the import template and a validating, all-or-nothing import."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from parkpulse.errors import FieldError, ValidationReport
from parkpulse.text import control_character
from rules._ruleset import RuleSet
from rules._tabular import AMOUNT_MAX, out_of_range, parse_bool, parse_number, read_table

__all__ = ["COLUMNS", "EconomicsRow", "import_economics", "parse_economics", "write_template"]


@dataclass(frozen=True)
class Column:
    key: str
    zh: str
    kind: str  # id | year | number | signed (may be negative) | integer | json
    required: bool = False


COLUMNS: list[Column] = [
    Column("firm_id", "企业编号", "id", required=True),
    Column("year", "年度", "year"),
    Column("added_value_10k_cny", "工业增加值(万元)", "number"),
    Column("tax_10k_cny", "税收实际贡献(万元)", "number"),
    Column("revenue_10k_cny", "主营业务收入(万元)", "number"),
    Column("rd_spend_10k_cny", "研发经费支出(万元)", "number"),
    Column("employees", "年平均职工人数(人)", "integer"),
    Column("pollutant_t", "主要污染物排放量(吨)", "number"),
    Column("output_units", "产品产量(产品单位)", "number"),
    Column("output_value_10k_cny", "工业总产值(万元)", "number"),
    Column("profit_10k_cny", "利润总额(万元)", "signed"),
    Column("green_declared", "绿色工厂申报项(JSON)", "json"),
]
_BY_KEY = {c.key: c for c in COLUMNS}
_BY_ZH = {c.zh: c for c in COLUMNS}
_HEADER = re.compile(r"^(?P<zh>.*?)\s*[(（](?P<key>[A-Za-z0-9_:.-]+)[)）]\s*$")
INTEGER_MAX = 2**31 - 1  # firm_economics.employees is a PostgreSQL integer
_FIRM_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass
class EconomicsRow:
    row: int
    firm_id: str
    values: dict[str, float | int | None]
    green: dict[str, object]


def _green_items(rs: RuleSet) -> dict[str, tuple[str, str]]:
    """Declarable GB/T 36132 items of every edition in the rule set: id → (zh, kind)."""
    out: dict[str, tuple[str, str]] = {}
    for ed in sorted(rs.green.values(), key=lambda e: e.effective):
        for it in ed.items:
            out[it.id] = (it.zh, it.kind)
    return out


def headers(rs: RuleSet) -> list[str]:
    hs = [f"{c.zh} ({c.key})" for c in COLUMNS if c.key != "green_declared"]
    for item_id, (zh, kind) in _green_items(rs).items():
        hint = "是/否" if kind == "veto" else "得分或是/否"
        hs.append(f"绿色工厂:{zh}[{hint}] (green:{item_id})")
    return hs


def write_template(rs: RuleSet, path: Path) -> Path:
    """An empty template with Chinese and English headers (csv or xlsx by the file name)."""
    hs = headers(rs)
    if path.suffix.lower() == ".xlsx":
        from openpyxl import Workbook
        from openpyxl.styles import Font

        wb = Workbook()
        ws = wb.active
        assert ws is not None
        ws.title = "firm_economics"
        ws.append(hs)
        for cell in ws[1]:
            cell.font = Font(bold=True)
        ws.freeze_panes = "A2"
        notes = wb.create_sheet("说明 notes")
        notes.append(["column", "说明", "unit / type"])
        for c in COLUMNS:
            notes.append([c.key, c.zh, c.kind])
        notes.append(
            ["green:<item>", "GB/T 36132 绿色工厂 declared items (veto: 是/否; scored: points or 是/否)", ""]
        )
        wb.save(path)
    else:
        with path.open("w", encoding="utf-8-sig", newline="") as fh:
            csv.writer(fh).writerow(hs)
    return path


def _resolve_header(h: str, greens: dict[str, tuple[str, str]]) -> str | None:
    text = h.strip()
    m = _HEADER.match(text)
    key = m.group("key") if m else text
    if key in _BY_KEY:
        return key
    if key.startswith("green:") and key[6:] in greens:
        return key
    if text in _BY_ZH:
        return _BY_ZH[text].key
    return None


def _read_header(
    hs: list[str], greens: dict[str, tuple[str, str]], problems: list[FieldError]
) -> dict[int, str]:
    """Column index → key of every recognised header; unknown, repeated and missing columns are problems."""
    cols: dict[int, str] = {}
    for i, h in enumerate(hs):
        key = _resolve_header(h, greens)
        if key is None:
            problems.append(
                FieldError(
                    f"row 1, column {i + 1}",
                    h,
                    "unknown column (run `parkpulse firms template` for the expected headers)",
                )
            )
        elif key in cols.values():
            problems.append(FieldError(f"row 1, column {i + 1}", h, "column given twice"))
        else:
            cols[i] = key
    if "firm_id" not in cols.values():
        problems.append(FieldError("row 1", ",".join(hs), "missing column firm_id (企业编号)"))
    return cols


@dataclass
class _CellReader:
    """Reads the cells of data rows into an EconomicsRow, appending every problem to `problems`."""

    greens: dict[str, tuple[str, str]]
    year: int
    problems: list[FieldError]

    def fail(self, at: str, value: object, why: str) -> None:
        self.problems.append(FieldError(at, value, why))

    def cell(self, row: EconomicsRow, key: str, at: str, raw: str) -> None:
        if why := control_character(raw, allow="\t\n\r"):
            self.fail(at, raw, why)
        elif key == "firm_id":
            row.firm_id = raw
            self.firm_id(at, raw)
        elif raw == "":
            return
        elif key == "year":
            self.year_cell(at, raw)
        elif key.startswith("green:"):
            self.green_item(row.green, key[6:], at, raw)
        elif _BY_KEY[key].kind == "json":
            self.green_json(row.green, at, raw)
        else:
            self.amount(row.values, _BY_KEY[key], at, raw)

    def firm_id(self, at: str, raw: str) -> None:
        if not raw:
            self.fail(at, raw, "required")
        elif not _FIRM_ID.match(raw):
            self.fail(at, raw, "firm ids are lowercase letters, digits and '-'")

    def year_cell(self, at: str, raw: str) -> None:
        try:
            y = int(parse_number(raw))
        except ValueError:
            self.fail(at, raw, "not a year")
            return
        if y != self.year:
            self.fail(at, raw, f"this import is for --year {self.year}")

    def green_item(self, green: dict[str, object], item_id: str, at: str, raw: str) -> None:
        """A `green:<item>` column: 是/否 for a basic requirement (veto), 是/否 or points for a scored item."""
        try:
            green[item_id] = parse_bool(raw)
            return
        except ValueError:
            pass
        if self.greens[item_id][1] == "veto":
            self.fail(at, raw, "a basic requirement is declared 是/否 (true/false)")
            return
        try:
            v = parse_number(raw)
        except ValueError:
            self.fail(at, raw, "expected points (a number) or 是/否")
            return
        if why := out_of_range(v):
            self.fail(at, raw, why)
            return
        green[item_id] = v

    def green_json(self, green: dict[str, object], at: str, raw: str) -> None:
        """The green_declared column: a JSON object {item: true/false or points}."""
        try:
            obj = json.loads(raw, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            self.fail(at, raw, f"not JSON: {exc}")
            return
        if not isinstance(obj, dict):
            self.fail(at, raw, "expected a JSON object {item: value}")
            return
        for k, v in obj.items():
            if k not in self.greens:
                self.fail(at, k, f"unknown green-factory item (known: {sorted(self.greens)})")
            elif not isinstance(v, bool | int | float):
                self.fail(at, v, f"item {k}: expected true/false or points >= 0")
            elif not isinstance(v, bool) and (why := out_of_range(v)):
                self.fail(at, v, f"item {k}: points {why}")
            else:
                green[k] = v

    def amount(self, values: dict[str, float | int | None], col: Column, at: str, raw: str) -> None:
        """A number column: finite, in range (negative only where signed), whole where an integer."""
        try:
            num = parse_number(raw)
        except ValueError:
            self.fail(at, raw, "not a number")
            return
        integer = col.kind == "integer"
        if why := out_of_range(num, INTEGER_MAX if integer else AMOUNT_MAX, signed=col.kind == "signed"):
            self.fail(at, raw, why)
        elif not integer:
            values[col.key] = num
        elif float(num).is_integer():
            values[col.key] = int(num)
        else:
            self.fail(at, raw, "must be a whole number")


def parse_economics(rs: RuleSet, path: Path, year: int) -> list[EconomicsRow]:
    """Validate every cell; raise one ValidationReport naming row, column and value of each problem."""
    greens = _green_items(rs)
    problems: list[FieldError] = []
    hs, body = read_table(path, problems)
    cols = _read_header(hs, greens, problems)
    if problems:
        raise ValidationReport(str(path), problems)
    reader = _CellReader(greens, year, problems)
    rows: list[EconomicsRow] = []
    seen: dict[str, int] = {}
    for rownum, cells in body:
        row = EconomicsRow(rownum, "", {}, {})
        for i, key in cols.items():
            raw = cells[i].strip() if i < len(cells) else ""
            reader.cell(row, key, f"row {rownum}, column {hs[i]}", raw)
        if row.firm_id:
            if row.firm_id in seen:
                reader.fail(
                    f"row {rownum}, column firm_id", row.firm_id, f"already given in row {seen[row.firm_id]}"
                )
            seen[row.firm_id] = rownum
        rows.append(row)
    if not body:
        problems.append(FieldError("row 2", "", "no data rows"))
    if problems:
        raise ValidationReport(str(path), problems)
    return rows


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number here")


def import_economics(conn: psycopg.Connection, rs: RuleSet, path: Path, year: int) -> int:
    """Validate, check firms against the registry, then upsert every row in one transaction.

    Nothing is written when any problem is found. Returns the number of rows imported.
    """
    rows = parse_economics(rs, path, year)
    known = {
        r[0]
        for r in conn.execute(
            "SELECT firm_id FROM firms WHERE firm_id = ANY(%s)", ([r.firm_id for r in rows],)
        )
    }
    problems = [
        FieldError(f"row {r.row}, column firm_id", r.firm_id, "no such firm in the registry")
        for r in rows
        if r.firm_id not in known
    ]
    if problems:
        raise ValidationReport(str(path), problems)
    keys = [c.key for c in COLUMNS if c.kind in ("number", "signed", "integer")]
    with conn.transaction():
        for r in rows:
            conn.execute(
                f"""INSERT INTO firm_economics (firm_id, year, {", ".join(keys)}, green_declared, imported_at, source_file)
                    VALUES (%s, %s, {", ".join(["%s"] * len(keys))}, %s, now(), %s)
                    ON CONFLICT (firm_id, year) DO UPDATE SET {", ".join(f"{k} = excluded.{k}" for k in keys)},
                      green_declared = excluded.green_declared, imported_at = now(), source_file = excluded.source_file""",
                (
                    r.firm_id,
                    year,
                    *[r.values.get(k) for k in keys],
                    Jsonb(r.green),
                    f"{path.name} row {r.row}",
                ),
            )
    return len(rows)
