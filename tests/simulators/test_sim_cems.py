"""The CEMS analyser: NOx at reference O2 breaks its limit in some clock hours, calibration flags."""

from __future__ import annotations

from collections import defaultdict

from simulators.device import SimulatedDevice


def test_hourly_nox_at_reference_o2_exceeds_the_limit_sometimes() -> None:
    now = [1_800_000_000.0 - 1_800_000_000.0 % 3600]
    dev = SimulatedDevice(
        1,
        "cems-analyser",
        seed=3,
        clock=lambda: now[0],
        params={"exceed_after_s": 1200, "calibration_after_s": 7200, "tick_s": 60},
    )
    hours: dict[int, list[float]] = defaultdict(list)
    flags: list[int] = []
    for _ in range(12 * 60):  # 12 h, one reading a minute
        t = dev.truth()
        # the platform converts measured NOx to 3.5 % O2 (HJ 75): C_ref = C × (21-3.5)/(21-O2)
        ref = t["nox_mg_m3"] * (21 - 3.5) / (21 - t["o2_pct"])
        flags.append(int(t["cems_flag"]))
        if t["cems_flag"] == 0:
            hours[int(now[0] // 3600)].append(ref)
        assert 3 <= t["o2_pct"] <= 10 and t["flue_flow_m3_h"] > 0 and 80 < t["flue_temp_c"] < 200
        now[0] += 60
    averages = [sum(v) / len(v) for v in hours.values() if len(v) >= 45]
    over = [a for a in averages if a > 200]
    assert 2 <= len(over) <= 6, averages  # 12 h with a 75-min excursion every 4 h
    assert min(averages) < 150
    assert 5 in flags and flags.count(5) == 15  # calibration: 15 min, flag C
    assert set(flags) <= {0, 5}


def test_no_excursions_when_disabled_and_maintenance_flag() -> None:
    now = [1_800_000_000.0]
    dev = SimulatedDevice(
        1,
        "cems-analyser",
        seed=4,
        clock=lambda: now[0],
        params={"exceed_every_s": 0, "maintenance": [{"after_s": 600, "for_s": 300}], "tick_s": 60},
    )
    flags = []
    for _ in range(6 * 60):
        t = dev.truth()
        flags.append(int(t["cems_flag"]))
        assert t["nox_mg_m3"] * 17.5 / (21 - t["o2_pct"]) < 180
        now[0] += 60
    assert flags.count(2) == 5  # maintenance, flag M
