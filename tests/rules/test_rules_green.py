"""绿色工厂 GB/T 36132: veto, scored items, linear 基准值/引领值 scoring, verdicts — by hand."""

from __future__ import annotations

import pytest

from rules._checks import run_check
from rules._green import GreenInputs, evaluate_green
from rules._ruleset import load_rule_set

RS = load_rule_set()
E2018 = RS.green["2018"]
E2025 = RS.green["2025"]


def test_linear_check_between_baseline_and_leading() -> None:
    # lower is better (baseline 100 > leading 60): 80 is half way → 0.5 of the points
    assert run_check("linear", 80, {"baseline": 100, "leading": 60}).fraction == pytest.approx(0.5)
    assert run_check("linear", 120, {"baseline": 100, "leading": 60}).fraction == 0.0
    assert run_check("linear", 50, {"baseline": 100, "leading": 60}).fraction == 1.0
    # higher is better (water reuse baseline 0.5, leading 0.8): 0.65 → 0.5
    assert run_check("linear", 0.65, {"baseline": 0.5, "leading": 0.8}).fraction == pytest.approx(0.5)


def test_2018_edition_pass_with_metered_water_reuse() -> None:
    declared = {
        "basic_legal": True,
        "basic_management": True,
        "infrastructure": 18,
        "management_system": True,
        "energy_resource_input": 12,
        "product": 8,
        "environmental_emission": True,
        "unit_product_energy": 9,
        "unit_product_carbon": 4,
        "performance_other": 7,
    }
    g = evaluate_green(E2018, GreenInputs("f", None, declared, {"water_reuse_rate": 0.85}))
    # 18 + 15 + 12 + 8 + 10 + 9 (declared: no industry threshold) + 4 + 5 (0.85 >= 0.8 metered) + 7 = 88 >= 80
    assert g.score == pytest.approx(88) and g.verdict == "pass"


def test_veto_fails_regardless_of_score() -> None:
    declared = {
        "basic_legal": False,
        "basic_management": True,
        "infrastructure": 20,
        "management_system": 15,
        "energy_resource_input": 15,
        "product": 10,
        "environmental_emission": 10,
        "unit_product_energy": 10,
        "unit_product_carbon": 5,
        "water_reuse": 5,
        "performance_other": 10,
    }
    g = evaluate_green(E2018, GreenInputs("f", None, declared, {}))
    assert g.score == pytest.approx(100) and g.verdict == "fail" and "veto" in str(g.detail["reason"])


def test_undeclared_basics_or_open_points_are_insufficient_data() -> None:
    g = evaluate_green(E2018, GreenInputs("f", None, {"infrastructure": 20}, {}))
    assert g.verdict == "insufficient_data" and "basic_legal" in str(g.detail["reason"])
    declared = {"basic_legal": True, "basic_management": True, "infrastructure": 20, "management_system": 15}
    g = evaluate_green(E2018, GreenInputs("f", None, declared, {}))
    # 35 points known, 65 undetermined: 35 + 65 >= 80 → cannot decide yet
    assert g.verdict == "insufficient_data" and g.detail["undetermined_points"] == pytest.approx(65)


def test_2025_edition_scores_water_reuse_linearly() -> None:
    declared = {
        "basic_legal": True,
        "basic_management": True,
        "unit_product_energy": 15,
        "unit_product_carbon": 10,
        "clean_energy_share": 5,
        "solid_waste_utilisation": 10,
        "unit_product_pollutant": 10,
        "output_per_mu": 5,
        "plot_ratio": 5,
        "product_green": 10,
        "management_qualitative": 10,
    }
    g = evaluate_green(E2025, GreenInputs("f", None, declared, {"water_reuse_rate": 0.65}))
    # declared 15+10+5+10+10+5+5+10+10 = 80, water reuse (0.65 - 0.5) / (0.8 - 0.5) x 10 = 5 → 85
    assert g.score == pytest.approx(85) and g.verdict == "pass"
    item = next(i for i in g.detail["items"] if i["item"] == "water_reuse")  # type: ignore[attr-defined]
    assert item["points"] == pytest.approx(5)
