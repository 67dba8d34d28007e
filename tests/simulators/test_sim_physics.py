"""Load curves by shift and energy integration, on a fake clock (no network)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from simulators.device import SimulatedDevice

CST = timezone(timedelta(hours=8))


def _at(y: int, m: int, d: int, h: int) -> float:
    return datetime(y, m, d, h, tzinfo=CST).timestamp()


def _mean_power(hour_start: float, seed: int = 1) -> float:
    now = [hour_start]
    dev = SimulatedDevice(
        1, "eastron-sdm630", seed=seed, clock=lambda: now[0], params={"rated_power_kw": 400, "tick_s": 60}
    )
    total = 0.0
    for _ in range(60):
        total += dev.truth()["active_power_kw"]
        now[0] += 60
    return total / 60


def test_three_shifts_night_low_weekend_lower() -> None:
    night = _mean_power(_at(2026, 11, 25, 3))  # a Wednesday
    day = _mean_power(_at(2026, 11, 25, 10))
    evening = _mean_power(_at(2026, 11, 25, 19))
    sunday = _mean_power(_at(2026, 11, 29, 10))
    assert night < evening < day
    assert day == pytest.approx(400 * 0.85, rel=0.15) and night == pytest.approx(400 * 0.30, rel=0.2)
    assert sunday == pytest.approx(day * 0.6, rel=0.2)


def test_power_is_integrated_into_the_import_counter() -> None:
    now = [_at(2026, 11, 25, 9)]
    dev = SimulatedDevice(
        2, "schneider-iem3255", seed=2, clock=lambda: now[0], params={"rated_power_kw": 250, "tick_s": 10}
    )
    start = dev.truth()["elec_import_kwh"]
    powers = []
    for _ in range(360):  # one hour in 10 s steps
        powers.append(dev.truth()["active_power_kw"])
        now[0] += 10
    used = dev.truth()["elec_import_kwh"] - start
    assert used == pytest.approx(sum(powers) * 10 / 3600, rel=1e-3)  # Wh resolution on INT64
    assert dev.truth()["elec_reactive_kvarh"] > 0


def test_same_seed_same_values() -> None:
    t0 = _at(2026, 11, 25, 12)
    a = SimulatedDevice(1, "chint-dtsu666", seed=5, clock=lambda: t0)
    b = SimulatedDevice(1, "chint-dtsu666", seed=5, clock=lambda: t0)
    c = SimulatedDevice(1, "chint-dtsu666", seed=6, clock=lambda: t0)
    assert a.truth() == b.truth() != c.truth()
