"""The shipped 亩均 schemes, named for what they are, classify one small park worked by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from parkpulse.errors import ValidationReport
from rules._economics import parse_economics
from rules._evaluate import Economics, FirmRecord, YearInputs, evaluate_year
from rules._mu import MuFirm, classify
from rules._ruleset import load_rule_set

# A park of five above-scale firms, 10 mu each, 100 tce (等价值), 1 t pollutant, 100 employees,
# R&D = 3.02 % of revenue (so the Huangyan R&D item is exactly 10 points for every firm).
#        id    tax  added value  output  profit  revenue   (10k CNY)
PARK = [
    ("p1", 300, 2000, 8000, 400, 5000),
    ("p2", 200, 3000, 9000, 100, 6000),
    ("p3", 150, 1000, 3000, -100, 1000),
    ("p4", 100, 800, 5000, -50, 2500),
    ("p5", 50, 600, 7000, 20, 1500),
]


def park() -> list[MuFirm]:
    return [
        MuFirm(
            firm_id=f,
            land_mu=10,
            above_scale=True,
            years_in_production=5,
            added_value=av,
            tax=tax,
            revenue=rev,
            rd_spend=0.0302 * rev,
            employees=100,
            pollutant_t=1,
            output_value=out,
            energy_tce=100,
            electricity_mwh=100,
            profit=profit,
        )
        for f, tax, av, out, profit, rev in PARK
    ]


def test_the_default_scheme_is_named_for_huangyan_weights_and_the_zhengzhou_method() -> None:
    rs = load_rule_set("henan-2025")
    assert (
        rs.mu.name == "huangyan-2022-zhengzhou-class"
        and rs.files["mu_scheme"] == "mu/huangyan-2022-zhengzhou-class.yaml"
    )
    assert "黄岩" in rs.mu.title and "郑州" in rs.mu.title
    assert rs.mu.indicators["mu_tax"].weight.value == 30 and rs.mu.indicators["mu_tax"].weight.verified
    assert "郑州晚报 2018-05-14" in rs.mu.class_method.source


def test_huangyan_weights_with_the_zhengzhou_class_method_worked_by_hand() -> None:
    # p1: 亩均税收 30 / 24.097 x 30 = 37.349; 亩均增加值 200 / 136.16 x 20 = 29.377;
    #     单位能耗增加值 20 / 2.694 x 20 = 148.478; 单位排放增加值 2 000 / 4 929.81 x 10 = 4.057;
    #     劳动生产率 20 / 18.14 x 10 = 11.025; R&D 0.0302 / 0.0302 x 10 = 10 → 240.287
    # scores: p2 324.306 > p1 240.287 > p3 125.143 > p4 99.625 > p5 74.106
    # top half = round(5 x 0.5) = 3 (half up): p2, p1, p3 → by 亩均税收 30 (p1) > 20 > 15; A quota
    #   round(5 x 0.15 = 0.75) = 1 → A = p1, although p2 has the best score
    # bottom half = 2: p4, p5 → by 单位能耗总产值 ascending 50 (p4) < 70 (p5); C quota round(0.5) = 1 → C = p4
    out = {o.firm_id: o for o in classify(load_rule_set("henan-2025").mu, park())}
    assert out["p1"].score == pytest.approx(
        30 / 24.097 * 30 + 200 / 136.16 * 20 + 20 / 2.694 * 20 + 2000 / 4929.81 * 10 + 20 / 18.14 * 10 + 10,
        rel=1e-12,
    )
    assert out["p1"].score == pytest.approx(240.2867, abs=1e-4) and out["p2"].score == pytest.approx(
        324.3058, abs=1e-4
    )
    assert {k: o.klass for k, o in out.items()} == {"p1": "A", "p2": "B", "p3": "B", "p4": "C", "p5": "B"}
    assert out["p1"].explanation["scheme"] == "huangyan-2022-zhengzhou-class"


def test_zhengzhou_2018_scheme_worked_by_hand() -> None:
    # indicators (÷ 10 mu): 亩均税收 30 20 15 10 5 (mean 16); 亩均主营业务收入 500 600 100 250 150
    # (mean 320); 亩均利润 40 10 -10 -5 2 (mean 7.4); weights 1 each (placeholders), benchmark = park mean
    # p1 = 30/16 + 500/320 + 40/7.4 = 1.875 + 1.5625 + 5.4054 = 8.8429
    # p2 = 1.25 + 1.875 + 1.3514 = 4.4764;  p3 = 0.9375 + 0.3125 - 1.3514 = -0.1014
    # p4 = 0.625 + 0.78125 - 0.6757 = 0.7306;  p5 = 0.3125 + 0.46875 + 0.2703 = 1.0515
    # top 3: p1, p2, p5 → by 亩均税收: p1 → A; bottom 2: p4, p3 → 单位能耗总产值 30 (p3) < 50 (p4) → C = p3
    rs = load_rule_set("zhengzhou-2018")
    assert set(rs.mu.indicators) == {"mu_tax", "mu_revenue", "mu_profit"}
    assert all(not i.weight.verified for i in rs.mu.indicators.values())  # weights not published
    assert len(rs.mu.bonus_items) == 5 and not any(b.scored for b in rs.mu.bonus_items)
    out = {o.firm_id: o for o in classify(rs.mu, park())}
    expected = {"p1": 8.8429, "p2": 4.4764, "p3": -0.1014, "p4": 0.7306, "p5": 1.0515}
    for fid, score in expected.items():
        assert out[fid].score == pytest.approx(score, abs=1e-4), fid
    assert out["p1"].score == pytest.approx(30 / 16 + 500 / 320 + 40 / 7.4, rel=1e-12)
    assert {k: o.klass for k, o in out.items()} == {"p1": "A", "p2": "B", "p3": "C", "p4": "B", "p5": "B"}
    items = {i["indicator"]: i for i in out["p3"].explanation["items"]}  # type: ignore[union-attr]
    assert items["mu_profit"]["zh"] == "亩均利润" and items["mu_profit"]["value"] == -10


def test_the_result_explanation_names_the_scheme() -> None:
    rs = load_rule_set("zhengzhou-2018")
    firms = [FirmRecord(f, "park", land_mu=10) for f, *_ in PARK]
    econ = {
        (f, 2025): Economics(added_value=av, tax=tax, revenue=rev, output_value=out, profit=profit)
        for f, tax, av, out, profit, rev in PARK
    }
    res = evaluate_year(rs, YearInputs(2025, firms, economics=econ))
    scheme = res.firms[0].explanation["mu_scheme"]
    assert (
        isinstance(scheme, dict)
        and scheme["name"] == "zhengzhou-2018"
        and scheme["file"] == "mu/zhengzhou-2018.yaml"
    )
    assert "郑州 2018" in str(scheme["title"]) and scheme["class_method"] == "two_stage"


def test_profit_imports_signed_and_other_amounts_stay_non_negative(tmp_path: Path) -> None:
    # 亩均利润 needs profit: a loss is a negative profit and is accepted; a negative tax is still refused
    rs = load_rule_set("zhengzhou-2018")
    f = tmp_path / "econ.csv"
    f.write_text("firm_id,year,tax_10k_cny,profit_10k_cny\nf1,2025,10,-25.5\n", encoding="utf-8")
    (row,) = parse_economics(rs, f, 2025)
    assert row.values["profit_10k_cny"] == -25.5
    f.write_text("firm_id,year,tax_10k_cny,profit_10k_cny\nf1,2025,-10,abc\n", encoding="utf-8")
    with pytest.raises(ValidationReport) as exc:
        parse_economics(rs, f, 2025)
    got = {(p.path, str(p.value), p.reason) for p in exc.value.problems}
    assert any("tax_10k_cny" in p and v == "-10" and "must be >= 0" in m for p, v, m in got), got
    assert any("profit_10k_cny" in p and v == "abc" and "not a number" in m for p, v, m in got), got
