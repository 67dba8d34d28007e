"""亩均: indicators, score and class rules, worked by hand; properties of the class methods."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules._mu import MuFirm, classify, indicators_for, quota
from rules._ruleset import MuScheme, load_rule_set

RS = load_rule_set("henan-2025")
ORDER = {"C": 0, "B": 1, "A": 2}


def firm(
    fid: str,
    tax: float,
    av: float,
    energy: float = 100.0,
    output: float | None = 1000.0,
    land: float = 1.0,
    **kw: object,
) -> MuFirm:
    base: dict[str, object] = dict(
        firm_id=fid,
        land_mu=land,
        above_scale=True,
        years_in_production=5.0,
        added_value=av,
        tax=tax,
        revenue=1000.0,
        rd_spend=10.0,
        employees=10.0,
        pollutant_t=1.0,
        output_value=output,
        energy_tce=energy,
        electricity_mwh=100.0,
    )
    base.update(kw)
    return MuFirm(**base)  # type: ignore[arg-type]


def simple_scheme(method: dict[str, object] | None = None) -> MuScheme:
    """score = 亩均税收 / 10 x 50 + 亩均增加值 / 100 x 50 (one mu each: 5 x tax + 0.5 x added value)."""
    src = {"source": "test scheme"}
    doc = load_rule_set("henan-2025").mu.model_dump(mode="json")
    doc["indicators"] = {
        "mu_tax": {"weight": {"value": 50, **src}, "benchmark": {"value": 10, **src}},
        "mu_added_value": {"weight": {"value": 50, **src}, "benchmark": {"value": 100, **src}},
    }
    if method:
        doc["class_method"] = method
    return MuScheme.model_validate(doc)


def ten_firms() -> list[MuFirm]:
    # (tax, added value, energy, output) → score = 5 x tax + 0.5 x av
    return [
        firm("f01", 20, 100),  # 100 + 50 = 150
        firm("f02", 10, 250),  # 50 + 125 = 175  (highest score)
        firm("f03", 18, 110),  # 90 + 55 = 145
        firm("f04", 8, 200),  # 40 + 100 = 140
        firm("f05", 12, 150),  # 60 + 75 = 135
        firm("f06", 6, 180, energy=200, output=3000),  # 30 + 90 = 120; output/energy 15, av/energy 0.9
        firm("f07", 9, 120, energy=50, output=1000),  # 45 + 60 = 105; 20, 2.4
        firm("f08", 4, 150, energy=100, output=900),  # 20 + 75 = 95;  9, 1.5
        firm("f09", 5, 100, energy=25, output=500),  # 25 + 50 = 75;  20, 4
        firm("f10", 3, 80, energy=20, output=400),  # 15 + 40 = 55;  20, 4  (lowest score)
    ]


def test_indicators_worked_example() -> None:
    f = firm(
        "x",
        tax=2000,
        av=5000,
        energy=400,
        land=100,
        revenue=20000,
        rd_spend=600,
        employees=200,
        pollutant_t=10,
        electricity_mwh=1000,
    )
    ind = indicators_for(f)
    assert ind["mu_tax"] == 20  # 2 000 / 100 mu
    assert ind["mu_added_value"] == 50  # 5 000 / 100 mu
    assert ind["added_value_per_energy"] == 12.5  # 5 000 / 400 tce
    assert ind["output_per_energy"] == 2.5  # 1 000 / 400 tce
    assert ind["added_value_per_pollutant"] == 500  # 5 000 / 10 t
    assert ind["tax_per_pollutant"] == 200  # 2 000 / 10 t
    assert ind["labour_productivity"] == 25  # 5 000 / 200 people
    assert ind["rd_intensity"] == 0.03  # 600 / 20 000
    assert ind["tax_per_electricity"] == 2  # 2 000 / 1 000 MWh


def test_henan_score_worked_example() -> None:
    f = firm(
        "x",
        tax=2000,
        av=5000,
        energy=400,
        land=100,
        revenue=20000,
        rd_spend=600,
        employees=200,
        pollutant_t=10,
    )
    (o,) = classify(RS.mu, [f])
    items = {i["indicator"]: i["points"] for i in o.explanation["items"]}  # type: ignore[union-attr,index]
    assert items["mu_tax"] == pytest.approx(20 / 24.097 * 30)  # 24.8994
    assert items["mu_added_value"] == pytest.approx(50 / 136.16 * 20)  # 7.3443
    assert items["added_value_per_energy"] == pytest.approx(12.5 / 2.694 * 20)  # 92.7988
    assert items["added_value_per_pollutant"] == pytest.approx(500 / 4929.81 * 10)  # 1.0142
    assert items["labour_productivity"] == pytest.approx(25 / 18.14 * 10)  # 13.7817
    assert items["rd_intensity"] == pytest.approx(0.03 / 0.0302 * 10)  # 9.9338
    assert o.score == pytest.approx(sum(items.values()))  # 149.77


def test_missing_emission_data_gets_the_park_average_item_score() -> None:
    a = firm("a", 10, 100, pollutant_t=1.0)  # 单位排放增加值 100 / 1 = 100
    b = firm("b", 10, 100, pollutant_t=4.0)  # 100 / 4 = 25
    c = firm("c", 10, 100, pollutant_t=None)  # no data → average of (100 and 25)/4929.81 x 10
    out = {o.firm_id: o for o in classify(RS.mu, [a, b, c])}
    pts = {
        k: next(i["points"] for i in o.explanation["items"] if i["indicator"] == "added_value_per_pollutant")  # type: ignore[union-attr,index]
        for k, o in out.items()
    }
    assert pts["c"] == pytest.approx((100 / 4929.81 * 10 + 25 / 4929.81 * 10) / 2)


def test_two_stage_zhengzhou_worked_example() -> None:
    out = {o.firm_id: o for o in classify(simple_scheme(), ten_firms())}
    # scores: f02 175 > f01 150 > f03 145 > f04 140 > f05 135 | f06 120 > f07 105 > f08 95 > f09 75 > f10 55
    assert [round(out[f].score or 0) for f in ("f01", "f02", "f10")] == [150, 175, 55]
    # top half (5): re-ranked by 亩均税收: f01 20 > f03 18 > f05 12 > f02 10 > f04 8; A quota 15 % x 10 = 1.5 → 2
    # bottom half (5): by 单位能耗总产值 ascending: f08 9 < f06 15 < f07 = f09 = f10 20; C quota 10 % x 10 = 1
    classes = {k: o.klass for k, o in out.items()}
    assert classes == {
        "f01": "A",
        "f03": "A",
        "f02": "B",
        "f04": "B",
        "f05": "B",
        "f06": "B",
        "f07": "B",
        "f08": "C",
        "f09": "B",
        "f10": "B",
    }
    assert "ranks 1 by 亩均税收" in str(out["f01"].explanation["text"])
    assert "outside the A quota of 2" in str(out["f02"].explanation["text"])  # best score, yet B
    assert "1 lowest by 单位能耗总产值" in str(out["f08"].explanation["text"])


def test_two_stage_falls_back_to_added_value_per_energy_without_output_value() -> None:
    firms = ten_firms()
    firms[8] = firm("f09", 5, 100, energy=25, output=None)  # f09 did not declare its output value
    out = {o.firm_id: o for o in classify(simple_scheme(), firms)}
    # 单位能耗增加值 ascending: f06 180/200 = 0.9 < f08 150/100 = 1.5 < f07 2.4 < f09 = f10 4 → C = f06
    assert out["f06"].klass == "C" and out["f08"].klass == "B"
    assert out["f06"].explanation["classing"]["c_quota"]["fallback_used"] is True  # type: ignore[index]


def test_percentile_worked_example() -> None:
    method = {
        "method": "percentile",
        "source": "test",
        "params": {"shares": {"A": 0.25, "B": 0.45, "C": 0.25, "D": 0.05}, "report_as": {"D": "C"}},
    }
    out = {o.firm_id: o.klass for o in classify(simple_scheme(method), ten_firms())}
    # A: round(10 x 0.25) = 3 → f02, f01, f03; B up to round(10 x 0.70) = 7 → f04, f05, f06, f07; C the rest
    assert [k for k, v in sorted(out.items()) if v == "A"] == ["f01", "f02", "f03"]
    assert [k for k, v in sorted(out.items()) if v == "C"] == ["f08", "f09", "f10"]


def test_out_of_scope_firms_are_listed_with_the_reason() -> None:
    firms = [
        *ten_firms(),
        firm("small", 50, 500, above_scale=False),
        firm("young", 50, 500, years_in_production=1.5),
        firm("noecon", 0, 0, has_economics=False),
    ]
    out = {o.firm_id: o for o in classify(simple_scheme(), firms)}
    assert len(out) == 13
    assert out["small"].klass == "out_of_scope" and "below_scale" in str(out["small"].explanation["reason"])
    assert out["young"].klass == "out_of_scope" and "1.50 years in production < 2" in str(
        out["young"].explanation["reason"]
    )
    assert out["noecon"].klass == "out_of_scope" and "no economic data" in str(
        out["noecon"].explanation["reason"]
    )
    # the evaluated count stays 10: same classes as without them
    assert sum(o.klass == "A" for o in out.values()) == 2


def test_quota_rounding() -> None:
    assert quota(10, 0.15, "half_up") == 2  # 1.5 → 2
    assert quota(10, 0.15, "floor") == 1
    assert quota(7, 0.10, "half_up") == 1  # 0.7 → 1
    assert quota(7, 0.5, "half_up") == 4  # 3.5 → 4
    assert quota(3, 0.15, "ceil") == 1  # 0.45 → 1


firms_st = st.lists(
    st.tuples(
        st.floats(0, 500),
        st.floats(1, 2000),
        st.floats(1, 1000),
        st.floats(1, 5000),
        st.floats(0.1, 50),
        st.floats(1, 200),
    ),
    min_size=1,
    max_size=40,
)


def _firms(rows: list[tuple[float, ...]]) -> list[MuFirm]:
    return [
        firm(f"f{i:03d}", tax=t, av=av, energy=e, output=out, pollutant_t=p, land=land)
        for i, (t, av, e, out, p, land) in enumerate(rows)
    ]


@pytest.mark.parametrize("rule_set", ["henan-2025", "henan-anyang-2018", "percentile-example"])
@settings(max_examples=60, deadline=None)
@given(rows=firms_st, data=st.data())
def test_raising_a_firms_tax_never_lowers_its_class(
    rule_set: str, rows: list[tuple[float, ...]], data: st.DataObject
) -> None:
    scheme = load_rule_set(rule_set).mu
    i = data.draw(st.integers(0, len(rows) - 1))
    extra = data.draw(st.floats(0.01, 1000))
    before = {o.firm_id: o.klass for o in classify(scheme, _firms(rows))}
    raised = list(rows)
    raised[i] = (rows[i][0] + extra, *rows[i][1:])
    after = {o.firm_id: o.klass for o in classify(scheme, _firms(raised))}
    fid = f"f{i:03d}"
    assert ORDER[after[fid]] >= ORDER[before[fid]]


@settings(max_examples=80, deadline=None)
@given(rows=firms_st)
def test_class_counts_follow_the_methods_shares(rows: list[tuple[float, ...]]) -> None:
    scheme = RS.mu
    n = len(rows)
    classes = [o.klass for o in classify(scheme, _firms(rows))]
    top = min(n, quota(n, 0.5, "half_up"))
    assert classes.count("A") == min(top, quota(n, 0.15, "half_up"))
    assert classes.count("C") == min(n - top, quota(n, 0.10, "half_up"))
    assert classes.count("B") == n - classes.count("A") - classes.count("C")
    pct = load_rule_set("percentile-example").mu
    pclasses = [o.klass for o in classify(pct, _firms(rows))]
    assert pclasses.count("A") == quota(n, 0.25, "half_up")
    assert pclasses.count("A") + pclasses.count("B") == quota(n, 0.70, "half_up")


def test_two_stage_anyang_sums_indicator_scores() -> None:
    src = {"source": "test scheme"}
    doc = simple_scheme().model_dump(mode="json")
    zero = {"weight": {"value": 0, **src}}  # ranked on, not scored
    doc["indicators"].update(
        {
            "rd_intensity": {**zero, "benchmark": {"value": 0.01, **src}},
            "tax_per_pollutant": {**zero, "benchmark": {"value": 10, **src}},
            "output_per_energy": {**zero, "benchmark": {"value": 10, **src}},
        }
    )
    doc["class_method"] = load_rule_set("henan-anyang-2018").mu.class_method.model_dump(mode="json")
    scheme = MuScheme.model_validate(doc)
    firms = ten_firms()
    firms[1] = firm("f02", 10, 250, rd_spend=30.0)  # R&D 30 / 1 000 = 0.03
    firms[7] = firm("f08", 4, 150, energy=100, output=900, pollutant_t=0.1)
    out = {o.firm_id: o.klass for o in classify(scheme, firms)}
    # A (top half, quota 2) by 亩均税收/10 + R&D/0.01: f02 1.0 + 3 = 4.0, f01 2.0 + 1 = 3.0, f03 1.8 + 1 = 2.8 ...
    assert sorted(k for k, v in out.items() if v == "A") == ["f01", "f02"]
    # C (bottom half, quota 1) by 总产值/能耗/10 + 税收/排放/10, ascending:
    #   f06 1.5 + 0.6 = 2.1 < f10 2.0 + 0.3 = 2.3 < f09 2.5 < f07 2.9 < f08 0.9 + 4.0 = 4.9
    assert [k for k, v in out.items() if v == "C"] == ["f06"]
