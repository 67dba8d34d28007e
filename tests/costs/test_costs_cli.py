"""`parkpulse tariffs …` / `parkpulse cost …` through typer's CliRunner against a real database."""

from __future__ import annotations

from pathlib import Path

import psycopg
from costs_seed import day_rows, firm_id, load_day, register_park, write_test_tariffs
from typer.testing import CliRunner, Result

from costs.cli import cost_app, tariffs_app

runner = CliRunner()


def said(r: Result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(r.output.split())


def test_sync_assign_refuse_an_overlap_and_show_a_month(db: str, unique_id: str, tmp_path: Path) -> None:
    tariffs = str(write_test_tariffs(tmp_path))
    with psycopg.connect(db) as conn:
        dev = register_park(conn, unique_id)
    fid = firm_id(unique_id)
    env = {"PARKPULSE_DATABASE_URL": db, "COLUMNS": "250"}

    r = runner.invoke(tariffs_app, ["validate", "--file", tariffs])
    assert r.exit_code == 0 and "2 tariffs" in said(r) and "1 version(s) not verified" in said(r)
    r = runner.invoke(tariffs_app, ["sync", "--file", tariffs], env=env)
    assert r.exit_code == 0, r.output
    assert "synced 2 tariffs, 3 versions" in said(r)

    args = ["assign", fid, "test-tou", "--from", "2024-01-01", "--to", "2025-01-01", "--voltage", "kv1_10"]
    r = runner.invoke(tariffs_app, [*args, "--basis", "demand"], env=env)
    assert r.exit_code == 0, r.output
    # the same carrier for an overlapping span: refused, naming the firm and both spans
    r = runner.invoke(
        tariffs_app, ["assign", fid, "test-tou", "--from", "2024-12-01", "--voltage", "kv35"], env=env
    )
    assert r.exit_code == 2
    msg = said(r)
    assert f"firm {fid}" in msg and "2024-12-01 to open end" in msg and "2024-01-01 to 2025-01-01" in msg
    assert "Nothing was written" in msg
    # what follows the first span is fine
    r = runner.invoke(
        tariffs_app, ["assign", fid, "test-tou", "--from", "2025-01-01", "--voltage", "kv35"], env=env
    )
    assert r.exit_code == 0, r.output
    # bad input names the field and the value
    r = runner.invoke(
        tariffs_app, ["assign", fid, "test-tou", "--from", "2026-01-01", "--voltage", "kv66"], env=env
    )
    assert r.exit_code == 2 and "voltage_class" in said(r) and "'kv66'" in said(r)
    r = runner.invoke(tariffs_app, ["assign", "no-such-firm", "test-gas", "--from", "2024-01-01"], env=env)
    assert r.exit_code == 2 and "firm" in said(r) and "'no-such-firm'" in said(r)
    r = runner.invoke(tariffs_app, ["assign", fid, "test-gas", "--from", "2024-13-01"], env=env)
    assert r.exit_code == 2 and "--from" in said(r) and "'2024-13-01'" in said(r)
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM firm_tariffs").fetchone() == (2,)

    r = runner.invoke(tariffs_app, ["assignments", fid], env=env)
    assert r.exit_code == 0 and "kv35" in said(r) and "demand" in said(r)

    with psycopg.connect(db) as conn:
        load_day(conn, day_rows(dev))
    r = runner.invoke(cost_app, ["month", fid, "2024-07"], env=env)
    assert r.exit_code == 0, r.output
    # 2678 yuan of energy + 400 kW × 30 yuan demand charge
    assert "total 14678.00 yuan" in said(r)
    r = runner.invoke(cost_app, ["day", fid, "2024-07-15"], env=env)
    assert r.exit_code == 0, r.output
    assert "1260.00" in said(r) and "0.5 × 1.6 (peak) + 0.1" in said(r)


def test_a_sync_never_drops_a_tariff_a_firm_pays(db: str, unique_id: str, tmp_path: Path) -> None:
    full = write_test_tariffs(tmp_path)
    with psycopg.connect(db) as conn:
        register_park(conn, unique_id)
    env = {"PARKPULSE_DATABASE_URL": db, "COLUMNS": "250"}
    assert runner.invoke(tariffs_app, ["sync", "--file", str(full)], env=env).exit_code == 0
    r = runner.invoke(
        tariffs_app, ["assign", firm_id(unique_id), "test-gas", "--from", "2024-01-01"], env=env
    )
    assert r.exit_code == 0, r.output
    text = full.read_text(encoding="utf-8")
    gas_only_gone = text[: text.index("  - id: test-gas")]
    less = tmp_path / "less"
    less.mkdir()
    r = runner.invoke(tariffs_app, ["sync", "--file", str(write_test_tariffs(less, gas_only_gone))], env=env)
    assert r.exit_code == 2
    assert "test-gas" in said(r) and firm_id(unique_id) in said(r) and "nothing was written" in said(r)
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM tariff_versions").fetchone() == (3,)
