"""`parkpulse kpi evaluate` inputs: firms.csv and energy.csv → YearInputs (no database)."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path

from parkpulse.errors import FieldError, ValidationReport
from parkpulse.text import control_character
from rules._energy import CarrierAmount, UnitError, to_base
from rules._evaluate import Economics, FirmRecord, YearInputs
from rules._ruleset import RuleSet
from rules._tabular import out_of_range, parse_bool, parse_number, read_table

__all__ = ["ENERGY_COLUMNS", "FIRMS_COLUMNS", "read_kpi_inputs"]

FIRMS_COLUMNS = [
    "firm_id",
    "year",
    "name",
    "park",
    "land_mu",
    "added_value_10k_cny",
    "tax_10k_cny",
    "revenue_10k_cny",
    "rd_spend_10k_cny",
    "employees",
    "pollutant_t",
    "output_units",
    "above_scale",
    "years_in_production",
]
FIRMS_OPTIONAL = ["output_value_10k_cny", "profit_10k_cny", "cluster", "industry"]
ENERGY_COLUMNS = ["firm_id", "year", "carrier", "quantity", "unit"]
_NUMERIC = (  # a tuple: problems of one line come out in this order, whatever the hash seed
    "land_mu",
    "added_value_10k_cny",
    "tax_10k_cny",
    "revenue_10k_cny",
    "rd_spend_10k_cny",
    "employees",
    "pollutant_t",
    "output_units",
    "years_in_production",
    "output_value_10k_cny",
    "profit_10k_cny",
)
_SIGNED = {"profit_10k_cny"}  # a loss is a negative profit


def _columns(
    path: Path, headers: list[str], required: list[str], optional: list[str], problems: list[FieldError]
) -> dict[str, int]:
    idx: dict[str, int] = {}
    for i, h in enumerate(headers):
        key = h.strip()
        if key in idx:
            problems.append(FieldError(f"{path.name} header, column {i + 1}", h, "column given twice"))
        elif key not in required and key not in optional:
            problems.append(
                FieldError(
                    f"{path.name} header, column {i + 1}",
                    h,
                    f"unknown column (expected: {','.join(required)})",
                )
            )
        idx[key] = i
    for r in required:
        if r not in idx:
            problems.append(FieldError(f"{path.name} header", ",".join(headers), f"missing column {r}"))
    return idx


def _refuse_controls(
    name: str, headers: list[str], rows: list[tuple[int, list[str]]], problems: list[FieldError]
) -> None:
    """Names and ids end up in tables printed on a terminal: no control characters anywhere."""
    for line, cells in rows:
        for i, cell in enumerate(cells):
            if why := control_character(cell):
                column = headers[i] if i < len(headers) else str(i + 1)
                problems.append(FieldError(f"{name} line {line}, column {column}", cell, why))


def _get(cells: list[str], idx: dict[str, int], key: str) -> str:
    i = idx.get(key)
    return cells[i].strip() if i is not None and i < len(cells) else ""


def _numbers(
    cells: list[str], idx: dict[str, int], at: str, problems: list[FieldError]
) -> tuple[dict[str, float | None], bool]:
    """The numeric columns of one firms.csv line (empty → None) and whether all of them are good."""
    vals: dict[str, float | None] = {}
    ok = True
    for key in _NUMERIC:
        raw = _get(cells, idx, key)
        if raw == "":
            vals[key] = None
            continue
        try:
            v = parse_number(raw)
        except ValueError:
            problems.append(FieldError(f"{at}, column {key}", raw, "not a number"))
            ok = False
            continue
        if why := out_of_range(v, signed=key in _SIGNED):
            problems.append(FieldError(f"{at}, column {key}", raw, why))
            ok = False
        vals[key] = v
    if vals.get("land_mu") is None:
        problems.append(FieldError(f"{at}, column land_mu", "", "required"))
        ok = False
    return vals, ok


def _above_scale(cells: list[str], idx: dict[str, int], at: str, problems: list[FieldError]) -> bool | None:
    """规上 (default) or 规下; None (with the problem recorded) when the cell says neither."""
    try:
        return parse_bool(_get(cells, idx, "above_scale") or "1")
    except ValueError as exc:
        problems.append(FieldError(f"{at}, column above_scale", _get(cells, idx, "above_scale"), str(exc)))
        return None


def _economics(vals: dict[str, float | None], at: str) -> Economics:
    return Economics(
        added_value=vals["added_value_10k_cny"],
        tax=vals["tax_10k_cny"],
        revenue=vals["revenue_10k_cny"],
        rd_spend=vals["rd_spend_10k_cny"],
        employees=vals["employees"],
        pollutant_t=vals["pollutant_t"],
        output_units=vals["output_units"],
        output_value=vals.get("output_value_10k_cny"),
        profit=vals.get("profit_10k_cny"),
        source=at,
    )


@dataclass
class _Firms:
    """What firms.csv gave so far: every (firm, year)'s economics, and the firms of the evaluated year."""

    year: int
    firms: dict[str, FirmRecord] = field(default_factory=dict)
    economics: dict[tuple[str, int], Economics] = field(default_factory=dict)

    def read_line(self, at: str, cells: list[str], idx: dict[str, int], problems: list[FieldError]) -> None:
        fid = _get(cells, idx, "firm_id")
        if not fid:
            problems.append(FieldError(f"{at}, column firm_id", fid, "required"))
            return
        try:
            fy = int(_get(cells, idx, "year"))
        except ValueError:
            problems.append(FieldError(f"{at}, column year", _get(cells, idx, "year"), "not a year"))
            return
        vals, ok = _numbers(cells, idx, at, problems)
        above = _above_scale(cells, idx, at, problems)
        if (fid, fy) in self.economics:
            problems.append(FieldError(f"{at}, column firm_id", fid, f"firm {fid} appears twice for {fy}"))
            return
        if not ok or above is None:
            return
        self.economics[(fid, fy)] = _economics(vals, at)
        if fy == self.year:
            self.firms[fid] = FirmRecord(
                firm_id=fid,
                park_id=_get(cells, idx, "park") or "park",
                name=_get(cells, idx, "name"),
                land_mu=vals["land_mu"] or 0.0,
                above_scale=above,
                years_in_production=vals["years_in_production"],
                cluster_id=_get(cells, idx, "cluster") or None,
                industry=_get(cells, idx, "industry") or None,
            )


def _energy_line(
    rs: RuleSet,
    at: str,
    cells: list[str],
    idx: dict[str, int],
    known: Container[str],
    firms_file: str,
    problems: list[FieldError],
) -> tuple[tuple[str, int], CarrierAmount] | None:
    """One energy.csv line as ((firm, year), amount), or None with every problem of the line recorded."""
    fid = _get(cells, idx, "firm_id")
    raw_year, carrier = _get(cells, idx, "year"), _get(cells, idx, "carrier")
    raw_q, unit = _get(cells, idx, "quantity"), _get(cells, idx, "unit")
    ok = True
    if fid not in known:
        problems.append(FieldError(f"{at}, column firm_id", fid, f"no such firm in {firms_file}"))
        ok = False
    try:
        ey = int(raw_year)
    except ValueError:
        problems.append(FieldError(f"{at}, column year", raw_year, "not a year"))
        ok, ey = False, 0
    try:
        q = parse_number(raw_q)
    except ValueError:
        problems.append(FieldError(f"{at}, column quantity", raw_q, "not a number"))
        ok, q = False, 0.0
    if why := out_of_range(q, signed=True):
        problems.append(FieldError(f"{at}, column quantity", raw_q, why))
        ok, q = False, 0.0
    try:
        to_base(rs, carrier, q, unit)
    except UnitError as exc:
        col = "carrier" if exc.path == "carrier" else "unit"
        problems.append(FieldError(f"{at}, column {col}", exc.value, exc.reason))
        ok = False
    return ((fid, ey), CarrierAmount(carrier, q, unit, at)) if ok else None


def read_kpi_inputs(rs: RuleSet, firms_csv: Path, energy_csv: Path, year: int) -> YearInputs:
    """Parse both files, collecting every problem (line, column, value) before raising."""
    problems: list[FieldError] = []
    fh, frows = read_table(firms_csv, problems)
    fidx = _columns(firms_csv, fh, FIRMS_COLUMNS, FIRMS_OPTIONAL, problems)
    eh, erows = read_table(energy_csv, problems)
    eidx = _columns(energy_csv, eh, ENERGY_COLUMNS, [], problems)
    if problems:
        raise ValidationReport("kpi evaluate inputs", problems)
    for name, head, rows in ((firms_csv.name, fh, frows), (energy_csv.name, eh, erows)):
        _refuse_controls(name, head, rows, problems)
    read = _Firms(year)
    for line, cells in frows:
        read.read_line(f"{firms_csv.name} line {line}", cells, fidx, problems)
    known_firms = {fid for fid, _ in read.economics}
    energy: dict[tuple[str, int], list[CarrierAmount]] = {}
    for line, cells in erows:
        at = f"{energy_csv.name} line {line}"
        got = _energy_line(rs, at, cells, eidx, known_firms, firms_csv.name, problems)
        if got is not None:
            energy.setdefault(got[0], []).append(got[1])
    if problems:
        raise ValidationReport("kpi evaluate inputs", problems)
    if not read.firms:
        raise ValidationReport(
            "kpi evaluate inputs",
            [FieldError(f"{firms_csv.name}, column year", year, "no firm rows for this year")],
        )
    return YearInputs(year=year, firms=list(read.firms.values()), economics=read.economics, energy=energy)
