"""`parkpulse kpi evaluate` input errors: every bad line named, with column and value."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from parkpulse.errors import ValidationReport
from rules._csvio import read_kpi_inputs
from rules._ruleset import load_rule_set

RS = load_rule_set()
ROOT = Path(__file__).resolve().parents[2]
FIRMS = """firm_id,year,name,park,land_mu,added_value_10k_cny,tax_10k_cny,revenue_10k_cny,rd_spend_10k_cny,employees,pollutant_t,output_units,above_scale,years_in_production
a,2025,A,p,100,5000,2000,20000,600,200,10,1000,是,5
b,2025,B,p,50,1000,300,5000,50,100,,500,1,1
"""


def test_unknown_carriers_units_and_numbers_are_named_by_line(tmp_path: Path) -> None:
    (tmp_path / "firms.csv").write_text(FIRMS, encoding="utf-8")
    (tmp_path / "energy.csv").write_text(
        "firm_id,year,carrier,quantity,unit\n"
        "a,2025,electricity,1000,MWh\n"
        "a,2025,plutonium,1,kg\n"  # line 3: unknown carrier
        "a,2025,natural_gas,5,barrels\n"  # line 4: unknown unit
        "b,2025,diesel,lots,t\n"  # line 5: not a number
        "zz,2025,diesel,1,t\n"  # line 6: firm not in firms.csv
        "b,2025,natural_gas,1,kWh\n",  # line 7: energy unit for a volume carrier
        encoding="utf-8",
    )
    with pytest.raises(ValidationReport) as exc:
        read_kpi_inputs(RS, tmp_path / "firms.csv", tmp_path / "energy.csv", 2025)
    got = [(p.path, p.value) for p in exc.value.problems]
    assert got == [
        ("energy.csv line 3, column carrier", "plutonium"),
        ("energy.csv line 4, column unit", "barrels"),
        ("energy.csv line 5, column quantity", "lots"),
        ("energy.csv line 6, column firm_id", "zz"),
        ("energy.csv line 7, column unit", "kWh"),
    ]


def test_cli_out_of_scope_firm_is_listed_and_errors_exit_2(tmp_path: Path) -> None:
    (tmp_path / "firms.csv").write_text(FIRMS, encoding="utf-8")
    (tmp_path / "energy.csv").write_text(
        "firm_id,year,carrier,quantity,unit\na,2025,electricity,1,MWh\n", encoding="utf-8"
    )
    cmd = [
        sys.executable,
        "-m",
        "parkpulse.cli",
        "kpi",
        "evaluate",
        "--firms",
        str(tmp_path / "firms.csv"),
        "--energy",
        str(tmp_path / "energy.csv"),
        "--year",
        "2025",
    ]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    b = next(f for f in doc["firms"] if f["firm_id"] == "b")
    # b: 1 year in production < 2 → out of scope, listed with the reason; no energy lines → no energy
    assert b["class"] == "out_of_scope" and "1.00 years in production" in b["explanation"]["text"]
    assert b["energy_tce"] is None and b["intensity_change_pct"] is None
    a = next(f for f in doc["firms"] if f["firm_id"] == "a")
    assert a["energy_tce"] == pytest.approx(0.1229) and a["mu_tax_10k_cny"] == 20
    (tmp_path / "energy.csv").write_text(
        "firm_id,year,carrier,quantity,unit\na,2025,electricity,1,MWx\n", encoding="utf-8"
    )
    bad = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "energy.csv line 2, column unit" in bad.stderr and "MWx" in bad.stderr


def test_absurd_numbers_and_control_characters_are_named_by_line(tmp_path: Path) -> None:
    """Issue 9: 1e308 MWh made every figure Infinity (invalid JSON out); an escape sequence reached the terminal."""
    (tmp_path / "firms.csv").write_text(
        FIRMS.replace(",A,p,100,", ",\x1b]0;pwned\x07A,p,1e300,"), encoding="utf-8"
    )
    (tmp_path / "energy.csv").write_text(
        "firm_id,year,carrier,quantity,unit\nb,2025,electricity,1e308,MWh\n", encoding="utf-8"
    )
    with pytest.raises(ValidationReport) as exc:
        read_kpi_inputs(RS, tmp_path / "firms.csv", tmp_path / "energy.csv", 2025)
    got = [(p.path, p.value, p.reason) for p in exc.value.problems]
    assert got == [
        (
            "firms.csv line 2, column name",
            "\x1b]0;pwned\x07A",
            "control character U+001B at position 0 is not allowed",
        ),
        ("firms.csv line 2, column land_mu", "1e300", "out of range: at most 1e+15"),
        ("energy.csv line 2, column quantity", "1e308", "out of range: at most 1e+15"),
    ]
