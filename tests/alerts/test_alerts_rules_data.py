"""Rules as data (validation with every problem reported), the O2 conversion, HJ 75/76 hourly
validity and the hysteresis tracker — pure functions, worked numbers in the comments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts import Action, Obs, Tracker, convert_to_reference_o2, evaluate_hour, load_rules
from alerts._ruleset import HJ212_FLAGS, Stack
from parkpulse.errors import ValidationReport

H = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


def test_shipped_rules_and_limits_load_with_sources() -> None:
    rs = load_rules()
    kinds = {r.kind for r in rs.rules}
    assert kinds == {"emission", "data_gap", "tamper", "threshold", "rate_of_change"}
    em = rs.of_kind("emission")[0]
    # a new gas boiler in a park outside any special-limits area: Table 2, 20 / 50 / 200
    stack = Stack("any-park", "gas_boiler", "gas", "new", "许昌市")
    for metric, limit in (("particulate_mg_m3", 20), ("so2_mg_m3", 50), ("nox_mg_m3", 200)):
        choice = rs.limits.limit_for(em.params, stack, metric, H)
        assert choice is not None and choice.limit == limit and "GB 13271-2014" in choice.source
        assert choice.table == "Table 2" and choice.basis_en == f"Table 2 (new boiler), {limit} mg/m³"
    assert rs.limits.o2_ref("gas_boiler")[0] == 3.5
    assert rs.limits.o2_ref("oil_boiler")[0] == 3.5
    assert rs.limits.o2_ref("coal_boiler")[0] == 9.0
    assert "GB 13271-2014" in rs.limits.o2_ref("coal_boiler")[1]


def test_local_override_is_stricter_and_scoped(tmp_path: Path) -> None:
    doc = yaml.safe_load(Path(load_rules().source).read_text(encoding="utf-8"))
    doc["rules"][0]["params"]["overrides"] = []  # switched off: Table 3 is the strictest in 郑州
    p = tmp_path / "rules.yaml"
    p.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    em_off = load_rules(p).of_kind("emission")[0]
    rs = load_rules()
    em = rs.of_kind("emission")[0]
    zz = Stack("zz", "gas_boiler", "gas", "existing", "郑州市")
    nox = rs.limits.limit_for(em.params, zz, "nox_mg_m3", H)
    assert nox is not None and nox.limit == 30 and nox.limit_id == "zhengzhou-ultra-low-nox"
    off = rs.limits.limit_for(em_off.params, zz, "nox_mg_m3", H)
    assert off is not None and off.limit == 150 and off.basis_en == "Table 3 (2+26 city), 150 mg/m³"
    so2 = rs.limits.limit_for(em.params, zz, "so2_mg_m3", H)
    assert so2 is not None and so2.limit == 50 and so2.table == "Table 3"  # the override only names NOx
    # a coal boiler in 郑州: the override is for gas boilers only → Table 3 coal NOx 200
    coal = rs.limits.limit_for(
        em.params, Stack("zz", "coal_boiler", "coal", "existing", "郑州"), "nox_mg_m3", H
    )
    assert coal is not None and coal.limit == 200 and coal.table == "Table 3"
    # the same gas boiler in 许昌 (not a 2+26 city): the Zhengzhou override does not reach it → Table 1, 400
    xc = rs.limits.limit_for(
        em.params, Stack("xc", "gas_boiler", "gas", "existing", "许昌市"), "nox_mg_m3", H
    )
    assert xc is not None and xc.limit == 400 and xc.basis_en == "Table 1 (existing boiler), 400 mg/m³"
    assert (
        rs.limits.limit_for(em.params, Stack("zz", "industrial_kiln", "gas", "new", "郑州"), "nox_mg_m3", H)
        is None
    )


def test_bad_rule_file_reports_every_problem(tmp_path: Path) -> None:
    bad = {
        "version": 1,
        "rules": [
            {
                "id": "a",
                "kind": "threshold",
                "version": 1,
                "params": {"metric": "no_such_metric", "op": "above", "limit": 5},
            },
            {
                "id": "b",
                "kind": "threshold",
                "version": 0,
                "severity": "loud",
                "params": {"metric": "power_factor", "op": "above", "limit": 1},
            },
            {
                "id": "c",
                "kind": "emission",
                "version": 1,
                "params": {
                    "pollutants": ["power_factor"],
                    "excluded_flags": ["M", "X"],
                    "limit_tables": {"existing": "nope", "new": "gb13271-2014-table3"},
                },
            },
            {
                "id": "d",
                "kind": "threshold",
                "version": 1,
                "params": {"metric": "flue_temp_c", "op": "above", "limit": 100, "clear_level": 120},
            },
            {"id": "e", "kind": "tamper", "version": 1, "params": {"metrics": ["voltage_l1_v"], "bogus": 1}},
            {"id": "a", "kind": "nonsense", "version": 1},
        ],
    }
    p = tmp_path / "rules.yaml"
    p.write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(ValidationReport) as ei:
        load_rules(p)
    paths = {(e.path, str(e.value)) for e in ei.value.problems}
    text = str(ei.value)
    assert ("rules[0].params.metric", "no_such_metric") in paths
    assert ("rules[1].version", "0") in paths
    assert ("rules[1].severity", "loud") in paths
    assert ("rules[2].params.pollutants", "power_factor") in paths
    assert ("rules[2].params.limit_tables.existing", "nope") in paths
    # Table 3 named as the table of new boilers: its applies_to says otherwise
    assert ("rules[2].params.limit_tables.new", "gb13271-2014-table3") in paths
    assert ("rules[2].params.excluded_flags", "X") in paths
    assert ("rules[3].params.clear_level", "120.0") in paths
    assert any(e.path == "rules[4].params.bogus" for e in ei.value.problems)
    assert any(e.path == "rules[5].kind" for e in ei.value.problems)
    assert "threshold" in text and len(ei.value.problems) >= 9


def test_bad_limits_file_is_reported(tmp_path: Path) -> None:
    lim = {
        "version": 1,
        "reference_o2": [{"source_types": ["gas_boiler"], "o2_ref_pct": 3.5, "source": "GB 13271-2014"}],
        "limit_sets": [
            {
                "id": "x",
                "table": "Table 1",
                "applies_to": "existing",
                "source": "somewhere",
                "limits": {
                    "gas_boiler": {"nox_mg_m3": -1, "hg_mg_m3": 0.05},
                    "coal_boiler": {"so2_mg_m3": 50},
                },
            }
        ],
    }
    p = tmp_path / "limits.yaml"
    p.write_text(yaml.safe_dump(lim), encoding="utf-8")
    with pytest.raises(ValidationReport) as ei:
        load_rules(None, p)
    msgs = [(e.path, e.reason) for e in ei.value.problems]
    assert any(path.endswith("gas_boiler.nox_mg_m3") and "> 0" in r for path, r in msgs)
    assert any(path.endswith("limits.coal_boiler") and "reference O2" in r for path, r in msgs)
    # hg has no catalogue metric and this file does not declare it in pollutants_outside_catalogue
    assert any(
        path.endswith("gas_boiler.hg_mg_m3") and "pollutants_outside_catalogue" in r for path, r in msgs
    )
    # the shipped rule names sets and an area this file does not have
    assert any(path == "rules[0].params.limit_tables.new" for path, _ in msgs)
    assert any(path == "rules[0].params.special_areas" for path, _ in msgs)


def test_a_rule_with_the_old_single_limit_set_is_refused_with_the_way_forward(tmp_path: Path) -> None:
    doc = yaml.safe_load(Path(load_rules().source).read_text(encoding="utf-8"))
    params = doc["rules"][0]["params"]
    del params["limit_tables"]
    params["limit_set"] = "gb13271-2014-existing"
    p = tmp_path / "rules.yaml"
    p.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ValidationReport) as ei:
        load_rules(p)
    assert (
        "limit_set" in str(ei.value)
        and "limit_tables" in str(ei.value)
        and "gb13271-2014-existing" in str(ei.value)
    )


def test_o2_conversion_worked_numbers() -> None:
    # gas boiler, reference 3.5 %: 150 mg/m³ measured at 9 % O2 → 150 × (21 − 3.5)/(21 − 9) = 150 × 17.5/12 = 218.75
    assert convert_to_reference_o2(150.0, 9.0, 3.5) == pytest.approx(218.75)
    # at 7 % O2: 150 × 17.5/14 = 187.5 (below the 200 limit although it would be 218.75 at 9 %)
    assert convert_to_reference_o2(150.0, 7.0, 3.5) == pytest.approx(187.5)
    # coal boiler, reference 9 %: 300 at 12 % → 300 × 12/9 = 400
    assert convert_to_reference_o2(300.0, 12.0, 9.0) == pytest.approx(400.0)
    with pytest.raises(ValueError, match="o2_measured_pct"):
        convert_to_reference_o2(1.0, 21.0, 3.5)


def _hour(
    n_minutes: int,
    value: float,
    o2: float,
    flagged: dict[int, str] | None = None,
    bad_quality: set[int] | None = None,
) -> tuple[list, list, list]:
    pol, ox, fl = [], [], []
    for i in range(n_minutes):
        t = H + timedelta(minutes=i, seconds=30)
        q = 4 if bad_quality and i in bad_quality else 0
        pol.append((t, None if q == 4 else value, q))
        ox.append((t, o2, 0))
        fl.append((t, float(HJ212_FLAGS[(flagged or {}).get(i, "N")]), 0))
    return pol, ox, fl


def test_hour_needs_45_valid_minutes_flagged_excluded_and_counted() -> None:
    # 50 minutes sent, 5 of them in maintenance (M): 45 valid → a valid hour
    pol, ox, fl = _hour(50, 150.0, 9.0, {i: "M" for i in range(5)})
    r = evaluate_hour(H, pol, ox, fl, o2_ref=3.5)
    assert (r.valid_minutes, r.excluded, r.excluded_by, r.valid) == (45, 5, {"flag:M": 5}, True)
    assert r.avg_converted == pytest.approx(218.75) and r.exceeded(200.0)
    # one more flagged minute (calibration C): 44 valid → no hourly value, no exceedance however high
    pol, ox, fl = _hour(50, 150.0, 9.0, {**{i: "M" for i in range(5)}, 10: "C"})
    r = evaluate_hour(H, pol, ox, fl, o2_ref=3.5)
    assert (r.valid_minutes, r.excluded, r.valid) == (44, 6, False)
    assert r.excluded_by == {"flag:M": 5, "flag:C": 1}
    assert not r.exceeded(200.0)
    # bad-quality readings and the other HJ 212 flags (F stopped, D fault, B comms) are excluded too;
    # S (manual) and T (over range) are kept: 60 − 3 flagged − 2 bad = 55 valid
    pol, ox, fl = _hour(60, 100.0, 3.5, {1: "F", 2: "D", 3: "B", 4: "S", 5: "T"}, bad_quality={7, 8})
    r = evaluate_hour(H, pol, ox, fl, o2_ref=3.5)
    assert r.valid_minutes == 55 and r.excluded == 5
    assert r.excluded_by == {"flag:F": 1, "flag:D": 1, "flag:B": 1, "quality": 2}
    assert r.avg_converted == pytest.approx(100.0)  # at the reference O2 nothing changes
    ev = r.minutes[1].as_json()
    assert ev["flag"] == "F" and ev["valid"] is False and ev["reason"] == "flag:F"


def test_minutes_average_faster_data_and_need_o2() -> None:
    # two readings in one minute are averaged into one minute value: (140 + 160)/2 = 150
    pol = [
        (H + timedelta(seconds=5), 140.0, 0),
        (H + timedelta(seconds=35), 160.0, 0),
        (H + timedelta(minutes=1), 100.0, 0),
    ]
    ox = [(H + timedelta(seconds=5), 9.0, 0)]  # minute 1 has no O2 → excluded (cannot be converted)
    r = evaluate_hour(H, pol, ox, [], o2_ref=3.5, min_valid_minutes=1)
    assert r.valid_minutes == 1 and r.excluded_by == {"no_o2": 1}
    assert r.avg_measured == pytest.approx(150.0) and r.avg_converted == pytest.approx(218.75)


def test_tracker_hysteresis_and_ordering() -> None:
    tr = Tracker()
    k = ("r", "s")
    assert tr.observe(k, Obs.BREACH, 100.0, fire_for_s=10) is None  # needs 10 s of breach
    assert tr.observe(k, Obs.BREACH, 110.0, fire_for_s=10) is Action.FIRE
    tr.fired(k, 1)
    assert tr.observe(k, Obs.BREACH, 111.0) is Action.REFRESH
    assert tr.observe(k, Obs.CLEAR, 120.0, clear_for_s=30) is None  # clear starts
    assert tr.observe(k, Obs.HOLD, 130.0, clear_for_s=30) is None  # back in the band: clear restarts
    assert tr.observe(k, Obs.CLEAR, 140.0, clear_for_s=30) is None
    assert tr.observe(k, Obs.CLEAR, 160.0, clear_for_s=30) is None  # 20 s clear
    assert tr.observe(k, Obs.BREACH, 50.0) is None  # older than the last observation: ignored
    assert tr.observe(k, Obs.CLEAR, 170.0, clear_for_s=30) is Action.CLEAR  # 30 s clear
    tr.cleared(k)
    assert tr.open_keys() == []
    # resolved by a person while breaching: no re-fire until the condition has cleared once
    tr.fired(k, 2)
    tr.resolved_elsewhere(k, 2, manual=True)
    assert tr.observe(k, Obs.BREACH, 200.0) is None
    assert tr.observe(k, Obs.CLEAR, 201.0) is None
    assert tr.observe(k, Obs.BREACH, 202.0) is Action.FIRE


_minute = st.tuples(
    st.floats(0, 500),
    st.floats(0, 20.9),
    st.sampled_from(list(HJ212_FLAGS)),
    st.sampled_from([0, 0, 0, 3, 4]),
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(0, 59), _minute, max_size=60), st.sampled_from([3.5, 9.0]))
def test_hour_invariants(minutes: dict, o2_ref: float) -> None:
    pol = [(H + timedelta(minutes=m), None if q == 4 else v, q) for m, (v, _, _, q) in minutes.items()]
    ox = [(H + timedelta(minutes=m), o2, 0) for m, (_, o2, _, _) in minutes.items()]
    fl = [(H + timedelta(minutes=m), float(HJ212_FLAGS[f]), 0) for m, (_, _, f, _) in minutes.items()]
    r = evaluate_hour(H, pol, ox, fl, o2_ref=o2_ref)
    assert r.minutes_present == len(minutes)
    assert r.valid_minutes + r.excluded == r.minutes_present == len(r.minutes)
    assert sum(r.excluded_by.values()) == r.excluded
    assert r.valid == (r.valid_minutes >= 45)
    expected_valid = [
        m for m, (_, _, f, q) in minutes.items() if q < 4 and f not in ("F", "M", "D", "C", "B")
    ]
    assert r.valid_minutes == len(expected_valid)
    if expected_valid:
        conv = [v * (21 - o2_ref) / (21 - o2) for m, (v, o2, _, _) in minutes.items() if m in expected_valid]
        assert r.avg_converted == pytest.approx(sum(conv) / len(conv))
        assert r.exceeded(100.0) == (r.valid and sum(conv) / len(conv) > 100.0)
    else:
        assert r.avg_converted is None and not r.exceeded(0.0)
