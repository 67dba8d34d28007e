"""Reports against a real database: the fixture month (reports_seed.py), rendered to Excel and PDF,
opened again (openpyxl, pypdf) and checked against the contract views."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from openpyxl import load_workbook
from pypdf import PdfReader
from reports_seed import COEF, GAS_PER_HOUR, KWH_PER_SLOT, TZ, fire_emission_alert, seed
from typer.testing import CliRunner

from reports import Period, ReportInputError, firm_report, park_report, parse_period, render_pdf, render_xlsx
from reports.cli import app

NOV = Period(2025, 11)


@pytest.fixture
def world(db: str, unique_id: str) -> tuple[str, str]:
    seed(db, unique_id)
    with psycopg.connect(db) as conn:
        fire_emission_alert(
            conn, unique_id, datetime(2025, 11, 5, 8, tzinfo=TZ), datetime(2025, 11, 5, 14, tzinfo=TZ)
        )
        fire_emission_alert(conn, unique_id, datetime(2025, 11, 29, 20, tzinfo=TZ), None)
        conn.commit()
    return db, unique_id


def view_month(dsn: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, args).fetchall()


def test_firm_figures_match_the_views(world: tuple[str, str]) -> None:
    dsn, park = world
    fid = f"{park}-f0"
    with psycopg.connect(dsn) as conn:
        rep = firm_report(conn, fid, NOV)
    ((kwh,),) = view_month(
        dsn,
        "SELECT sum(quantity) FROM v_firm_energy_daily WHERE firm_id = %s AND carrier = 'electricity' "
        "AND day >= '2025-11-01' AND day < '2025-12-01'",
        fid,
    )
    elec = next(e for e in rep.energy if e.carrier == "electricity")
    gas = next(e for e in rep.energy if e.carrier == "natural_gas")
    assert elec.quantity == pytest.approx(float(kwh))  # type: ignore[arg-type]
    assert elec.quantity == pytest.approx(30 * 96 * KWH_PER_SLOT, rel=0.01)
    assert elec.tce == pytest.approx(elec.quantity * COEF["electricity"][0] / 1000)
    assert gas.tce == pytest.approx(gas.quantity * COEF["natural_gas"][0] / 1000)
    assert gas.quantity == pytest.approx(30 * 24 * GAS_PER_HOUR, rel=0.01)
    ((cost,),) = view_month(
        dsn, "SELECT sum(cost_yuan) FROM v_firm_cost_monthly WHERE firm_id = %s AND month = '2025-11-01'", fid
    )
    assert cost is not None and rep.total_cost() == pytest.approx(float(cost))  # type: ignore[arg-type]
    assert rep.tariffs and rep.tariffs[0].startswith("henan-industrial-tou ")
    assert rep.rule_sets == ["henan-2025 7"] and rep.no_tariff == []
    # alerts: each has 6 judged stack-hours, hours 0, 1, 3, 4 valid and 0, 2, 4 above the limit
    closed, still_open = rep.alerts
    assert closed.resolved_at is not None and (closed.valid_hours, closed.exceeded_hours) == (4, 2)
    assert still_open.resolved_at is None and (still_open.valid_hours, still_open.exceeded_hours) == (4, 2)
    # completeness: the electricity meter missed one day of 96 polls of 15 minutes
    main = next(c for c in rep.completeness if c.device_id == "main")
    assert main.expected == 30 * 96 and main.received == 29 * 96


def test_excel_has_numbers_formulas_units_and_frozen_headers(world: tuple[str, str]) -> None:
    dsn, park = world
    with psycopg.connect(dsn) as conn:
        rep = firm_report(conn, f"{park}-f0", NOV)
    wb = load_workbook(io.BytesIO(render_xlsx(rep, "zh")))
    assert wb.sheetnames[:3] == ["概要", "能源消费", "每日能耗"]
    en = wb["能源消费"]
    assert en.freeze_panes == "A2"
    assert en["F1"].value == "折标煤 (tce)"
    rows = {r[0].value: r for r in en.iter_rows(min_row=2) if r[0].value in ("电力", "天然气")}
    assert isinstance(rows["电力"][3].value, int | float)  # a number, not text
    assert rows["电力"][3].value == pytest.approx(
        next(e.quantity for e in rep.energy if e.carrier == "electricity")
    )
    assert rows["电力"][5].value == f"=D{rows['电力'][0].row}*E{rows['电力'][0].row}/1000"
    assert str(en.cell(en.max_row, 6).value).startswith("=SUMPRODUCT(")
    cost = wb["能源费用"]
    assert cost["H1"].value == "费用 (元)"
    num = int | float
    priced = [
        r for r in cost.iter_rows(min_row=2) if isinstance(r[3].value, num) and isinstance(r[5].value, num)
    ]
    assert priced and all(r[7].value == f"=D{r[0].row}*F{r[0].row}" for r in priced)
    assert sum(r[3].value * r[5].value for r in priced) == pytest.approx(rep.total_cost())
    summary = {r[0].value: r[1].value for r in wb["概要"].iter_rows(min_row=2)}
    assert summary["规则集版本"] == "henan-2025 7"
    assert str(summary["电价版本"]).startswith("henan-industrial-tou")
    comp = wb["数据完整性"]
    assert comp["H2"].value == "=IF(F2=0,1,MIN(1,G2/F2))"


def test_pdf_in_chinese_and_english_embeds_its_font(world: tuple[str, str]) -> None:
    dsn, park = world
    with psycopg.connect(dsn) as conn:
        rep = firm_report(conn, f"{park}-f1", NOV)  # no tariff
    zh = PdfReader(io.BytesIO(render_pdf(rep, "zh")))
    text = "\n".join(p.extract_text() for p in zh.pages)
    assert "企业能源月度报告" in text and "测试企业1" in text
    assert "未分配电价" in text and "henan-2025 7" in text
    elec = next(e for e in rep.energy if e.carrier == "electricity")
    assert f"{elec.quantity:,.2f}" in text
    fonts = {str(f.get_object()["/BaseFont"]) for p in zh.pages for f in p["/Resources"]["/Font"].values()}  # type: ignore[index]
    assert any("ParkPulseReportSans" in f for f in fonts)
    en = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(render_pdf(rep, "en"))).pages)
    assert "Firm energy report (monthly)" in en and "no tariff assigned" in en


def test_park_report_sums_its_firms_and_has_the_scorecard(world: tuple[str, str]) -> None:
    dsn, park = world
    with psycopg.connect(dsn) as conn:
        rep = park_report(conn, park, NOV)
        firms = [firm_report(conn, f"{park}-f{i}", NOV) for i in range(2)]
    elec = next(e for e in rep.energy if e.carrier == "electricity")
    assert elec.quantity == pytest.approx(
        sum(next(e.quantity for e in f.energy if e.carrier == "electricity") for f in firms)
    )
    assert rep.no_tariff == [f"{park}-f1"] and len(rep.kpis) == 2
    wb = load_workbook(io.BytesIO(render_xlsx(rep, "en")))
    assert "Park scorecard" in wb.sheetnames and wb["Park scorecard"]["B2"].value == 12.5


def test_bad_input_is_refused_by_name(world: tuple[str, str]) -> None:
    dsn, park = world
    with pytest.raises(ReportInputError, match=r"^period: .*'2025-13'"):
        parse_period("2025-13")
    with psycopg.connect(dsn) as conn, pytest.raises(ReportInputError, match=r"^firm: .*'nope'"):
        firm_report(conn, "nope", NOV)
    r = CliRunner().invoke(
        app,
        ["firm", "--firm", f"{park}-f0", "--month", "2025-11", "--format", "docx", "-o", "x"],
        env={"PARKPULSE_DATABASE_URL": dsn},
    )
    assert r.exit_code == 2 and "format: must be xlsx or pdf (got 'docx')" in r.output


def test_cli_firm_park_and_an_idempotent_schedule(world: tuple[str, str], tmp_path: Path) -> None:
    dsn, park = world
    env = {"PARKPULSE_DATABASE_URL": dsn}
    runner = CliRunner()
    out = tmp_path / "f0.pdf"
    r = runner.invoke(
        app,
        [
            "firm",
            "--firm",
            f"{park}-f0",
            "--month",
            "2025-11",
            "--format",
            "pdf",
            "--lang",
            "en",
            "-o",
            str(out),
        ],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert out.read_bytes().startswith(b"%PDF")
    r = runner.invoke(
        app, ["park", "--park", park, "--year", "2025", "-o", str(tmp_path / "p.xlsx")], env=env
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["schedule", "--dir", str(tmp_path / "s"), "--month", "2025-11"], env=env)
    assert r.exit_code == 0, r.output
    made = sorted(p.relative_to(tmp_path / "s").as_posix() for p in (tmp_path / "s").rglob("*.*"))
    assert f"2025-11/{park}/{park}-f0.zh.xlsx" in made and f"2025-11/{park}/{park}.zh.pdf" in made
    assert "6 written, 0 already there" in r.output
    r = runner.invoke(app, ["schedule", "--dir", str(tmp_path / "s"), "--month", "2025-11"], env=env)
    assert "0 written, 6 already there" in r.output


def test_yearly_period_bounds() -> None:
    p = parse_period("2025")
    assert (p.start.isoformat(), p.end.isoformat(), p.kind) == ("2025-01-01", "2026-01-01", "year")
    assert parse_period("2025-12").end.isoformat() == "2026-01-01"
    assert Period(2026, 1).previous_month() == Period(2025, 12)
