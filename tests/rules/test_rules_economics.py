"""`parkpulse firms import|template`: every problem named by row, column and value; all or nothing."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg
import pytest
from openpyxl import Workbook, load_workbook
from typer.testing import CliRunner

from parkpulse.errors import ValidationReport
from parkpulse.registry import Firm, ParkFile, ParkInfo, import_registry
from rules._economics import headers, import_economics, parse_economics
from rules._ruleset import load_rule_set
from rules.cli import firms_app

RS = load_rule_set()


def _registry(dsn: str, park: str) -> None:
    with psycopg.connect(dsn) as conn:
        import_registry(
            conn,
            ParkFile(
                park=ParkInfo(id=park, name="园区"),
                firms=[
                    Firm(id=f"{park}-a", name="A", land_mu=10),
                    Firm(id=f"{park}-b", name="B", land_mu=20),
                ],
            ),
        )


def test_template_csv_and_xlsx_have_chinese_and_english_headers(tmp_path: Path) -> None:
    runner = CliRunner()
    for name in ("t.csv", "t.xlsx"):
        res = runner.invoke(firms_app, ["template", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
    csv_head = (tmp_path / "t.csv").read_text(encoding="utf-8-sig").splitlines()[0].split(",")
    assert csv_head[0] == "企业编号 (firm_id)" and "税收实际贡献(万元) (tax_10k_cny)" in csv_head
    assert any(h.endswith("(green:basic_legal)") for h in csv_head)
    wb = load_workbook(tmp_path / "t.xlsx")
    assert [c.value for c in wb.worksheets[0][1]] == csv_head and wb.worksheets[0].max_row == 1


def test_bad_file_names_every_problem_and_imports_nothing(db: str, unique_id: str, tmp_path: Path) -> None:
    _registry(db, unique_id)
    hs = headers(RS)
    head = ",".join(hs[:9]) + ",(green:basic_legal)"
    rows = [
        head,
        f"{unique_id}-a,2025,5000,2000,20000,600,200,10,1000,是",
        f"{unique_id}-b,2025,abc,-3,,,12.5,,,maybe",  # added value not a number, tax < 0, employees, veto
        f"{unique_id}-zzz,2025,1,1,1,1,1,1,1,否",  # not in the registry (checked against the database)
        f"{unique_id}-a,2024,1,1,1,1,1,1,1,是",  # wrong year and a duplicate firm
    ]
    f = tmp_path / "bad.csv"
    f.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with psycopg.connect(db) as conn, pytest.raises(ValidationReport) as exc:
        import_economics(conn, RS, f, 2025)
    got = {(p.path, str(p.value)) for p in exc.value.problems}
    assert ("row 3, column 工业增加值(万元) (added_value_10k_cny)", "abc") in got
    assert ("row 3, column 税收实际贡献(万元) (tax_10k_cny)", "-3") in got
    assert ("row 3, column 年平均职工人数(人) (employees)", "12.5") in got
    assert ("row 3, column (green:basic_legal)", "maybe") in got
    assert ("row 5, column 年度 (year)", "2024") in got
    assert ("row 5, column firm_id", f"{unique_id}-a") in got
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM firm_economics").fetchone() == (0,)
    # the registry check runs once the file itself is clean: still nothing imported
    f.write_text("\n".join([head, rows[1], rows[3]]) + "\n", encoding="utf-8")
    with psycopg.connect(db) as conn, pytest.raises(ValidationReport) as exc:
        import_economics(conn, RS, f, 2025)
    assert [(p.path, p.value) for p in exc.value.problems] == [("row 3, column firm_id", f"{unique_id}-zzz")]
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM firm_economics").fetchone() == (0,)


def test_xlsx_import_then_reimport_replaces(db: str, unique_id: str, tmp_path: Path) -> None:
    _registry(db, unique_id)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["firm_id", "added_value_10k_cny", "税收实际贡献(万元)", "employees", "green_declared"])
    ws.append([f"{unique_id}-a", 5000, 2000.5, 200, '{"basic_legal": true, "infrastructure": 18}'])
    ws.append([f"{unique_id}-b", 1000, 300, 100, None])
    path = tmp_path / "eco.xlsx"
    wb.save(path)
    res = CliRunner().invoke(firms_app, ["import", str(path), "--year", "2025", "--database-url", db])
    assert res.exit_code == 0, res.output + repr(res.exception)
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT tax_10k_cny, employees, green_declared, source_file FROM firm_economics "
            "WHERE firm_id = %s AND year = 2025",
            (f"{unique_id}-a",),
        ).fetchone()
        assert row is not None
        assert float(row[0]) == 2000.5 and row[1] == 200
        assert row[2] == {"basic_legal": True, "infrastructure": 18} and row[3] == "eco.xlsx row 2"
    ws.cell(row=2, column=3, value=2100)
    wb.save(path)
    with psycopg.connect(db) as conn:
        assert import_economics(conn, RS, path, 2025) == 2
        assert (
            float(
                conn.execute(
                    "SELECT tax_10k_cny FROM firm_economics WHERE firm_id = %s", (f"{unique_id}-a",)
                ).fetchone()[0]
            )
            == 2100
        )  # type: ignore[index]


def test_unknown_column_is_named(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("firm_id,tax_10k_cny,profit\na,1,2\n", encoding="utf-8")
    with pytest.raises(ValidationReport) as exc:
        parse_economics(RS, f, 2025)
    assert [(p.path, p.value) for p in exc.value.problems] == [("row 1, column 3", "profit")]


# --- issue 9: numbers the database or the evaluation cannot hold, control characters, formula cells ---

ROOT = Path(__file__).resolve().parents[2]


def test_out_of_range_numbers_and_control_characters_are_named_by_row_and_column(
    db: str, unique_id: str, tmp_path: Path
) -> None:
    _registry(db, unique_id)
    a, b = f"{unique_id}-a", f"{unique_id}-b"
    rows = [
        "firm_id,tax_10k_cny,employees,green_declared,(green:infrastructure)",
        f"{a},100,99999999999,,",  # row 2: beyond the integer column
        f'{b},1e300,12,"{{""basic_legal"": NaN}}",',  # row 3: absurd amount, NaN in the JSON
        f'{a}x,5,12,"{{""infrastructure"": Infinity}}",',  # row 4: Infinity in the JSON
        f'{b}y,5,12,"{{""infrastructure"": 1e400}}",Infinity',  # row 5: 1e400 overflows; Infinity points
        f"{b}\x00z,5,12,,",  # row 6: NUL in the firm id
        f"{a}w,5,12,,7\x1b[2J",  # row 7: an escape sequence in a number
        f"{a}v,5,,,",  # row 8: fine on its own
    ]
    f = tmp_path / "eco.csv"
    f.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with psycopg.connect(db) as conn, pytest.raises(ValidationReport) as exc:
        import_economics(conn, RS, f, 2025)
    got = {(p.path, p.value): p.reason for p in exc.value.problems}
    assert got[("row 2, column employees", "99999999999")] == "out of range: at most 2147483647"
    assert got[("row 3, column tax_10k_cny", "1e300")] == "out of range: at most 1e+15"
    assert got[("row 3, column green_declared", '{"basic_legal": NaN}')].startswith("not JSON: NaN")
    assert got[("row 4, column green_declared", '{"infrastructure": Infinity}')].startswith(
        "not JSON: Infinity"
    )
    assert (
        got[("row 5, column green_declared", float("inf"))]
        == "item infrastructure: points must be a finite number"
    )
    assert ("row 5, column (green:infrastructure)", "Infinity") in got
    assert (
        got[("row 6, column firm_id", f"{b}\x00z")]
        == f"control character U+0000 at position {len(b)} is not allowed"
    )
    assert ("row 7, column (green:infrastructure)", "7\x1b[2J") in got
    assert len(got) == 8  # every problem of the file, nothing else
    with psycopg.connect(db) as conn:  # all or nothing: the good row 8 waits for a clean file
        assert conn.execute("SELECT count(*) FROM firm_economics").fetchone() == (0,)
    # the command names them the same way, without a traceback
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "parkpulse.cli",
            "firms",
            "import",
            str(f),
            "--year",
            "2025",
            "--database-url",
            db,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "row 2, column employees: out of range: at most 2147483647 (got '99999999999')" in res.stderr


def _with_cached_values(path: Path, cached: dict[str, str]) -> None:
    """Give formula cells the cached values a spreadsheet program would have saved (openpyxl saves none)."""
    src = zipfile.ZipFile(path)
    parts = {name: src.read(name) for name in src.namelist()}
    src.close()
    sheet = parts["xl/worksheets/sheet1.xml"].decode()
    for ref, value in cached.items():
        cell = re.search(rf'<c r="{ref}"[^>]*><f>[^<]*</f>(<v */>|<v></v>)', sheet)
        assert cell is not None, ref
        sheet = sheet.replace(cell.group(0), cell.group(0).replace(cell.group(1), f"<v>{value}</v>"))
    parts["xl/worksheets/sheet1.xml"] = sheet.encode()
    with zipfile.ZipFile(path, "w") as out:
        for name, data in parts.items():
            out.writestr(name, data)


def test_xlsx_formula_cells_give_their_cached_values_or_are_refused_by_cell(
    db: str, unique_id: str, tmp_path: Path
) -> None:
    _registry(db, unique_id)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "企业数据"
    ws.append(["firm_id", "tax_10k_cny", "employees"])
    ws.append([f"{unique_id}-a", 100, "=2*50"])
    ws.append([f"{unique_id}-b", "=B2*2", 7])
    path = tmp_path / "eco.xlsx"
    wb.save(path)
    # written by a program that does not compute formulas: no cached value → refused, naming each cell
    res = CliRunner().invoke(firms_app, ["import", str(path), "--year", "2025", "--database-url", db])
    assert isinstance(res.exception, ValidationReport), res.output + repr(res.exception)
    assert [(p.path, p.value) for p in res.exception.problems] == [
        ("企业数据!C2", "=2*50"),
        ("企业数据!B3", "=B2*2"),
    ]
    assert "formula without a cached value" in res.exception.problems[0].reason
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM firm_economics").fetchone() == (0,)
    # saved by a spreadsheet program: the cached values are imported
    _with_cached_values(path, {"C2": "100", "B3": "200"})
    res = CliRunner().invoke(firms_app, ["import", str(path), "--year", "2025", "--database-url", db])
    assert res.exit_code == 0, res.output + repr(res.exception)
    with psycopg.connect(db) as conn:
        got = conn.execute(
            "SELECT firm_id, tax_10k_cny, employees FROM firm_economics ORDER BY firm_id"
        ).fetchall()
    assert [(f, float(t), e) for f, t, e in got] == [
        (f"{unique_id}-a", 100.0, 100),
        (f"{unique_id}-b", 200.0, 7),
    ]
