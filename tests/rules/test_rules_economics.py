"""`parkpulse firms import|template`: every problem named by row, column and value; all or nothing."""

from __future__ import annotations

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
        import_registry(conn, ParkFile(park=ParkInfo(id=park, name="园区"),
                                       firms=[Firm(id=f"{park}-a", name="A", land_mu=10), Firm(id=f"{park}-b", name="B", land_mu=20)]))


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
        f"{unique_id}-b,2025,abc,-3,,,12.5,,,maybe",       # added value not a number, tax < 0, employees, veto
        f"{unique_id}-zzz,2025,1,1,1,1,1,1,1,否",           # not in the registry (checked against the database)
        f"{unique_id}-a,2024,1,1,1,1,1,1,1,是",             # wrong year and a duplicate firm
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
        row = conn.execute("SELECT tax_10k_cny, employees, green_declared, source_file FROM firm_economics "
                           "WHERE firm_id = %s AND year = 2025", (f"{unique_id}-a",)).fetchone()
        assert row is not None
        assert float(row[0]) == 2000.5 and row[1] == 200
        assert row[2] == {"basic_legal": True, "infrastructure": 18} and row[3] == "eco.xlsx row 2"
    ws.cell(row=2, column=3, value=2100)
    wb.save(path)
    with psycopg.connect(db) as conn:
        assert import_economics(conn, RS, path, 2025) == 2
        assert float(conn.execute("SELECT tax_10k_cny FROM firm_economics WHERE firm_id = %s",
                                  (f"{unique_id}-a",)).fetchone()[0]) == 2100  # type: ignore[index]


def test_unknown_column_is_named(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("firm_id,tax_10k_cny,profit\na,1,2\n", encoding="utf-8")
    with pytest.raises(ValidationReport) as exc:
        parse_economics(RS, f, 2025)
    assert [(p.path, p.value) for p in exc.value.problems] == [("row 1, column 3", "profit")]
