"""The tariffs file: the shipped one loads, and bad files are refused with every problem named."""

from __future__ import annotations

from pathlib import Path

import pytest
from costs_seed import TEST_TARIFFS, write_test_tariffs

from costs import TariffError, load_tariffs, parse_span, price_rows


def test_the_shipped_file_has_henan_by_month_and_marks_what_is_unverified() -> None:
    tf = load_tariffs()
    henan = tf.tariff("henan-industrial-tou")
    assert henan is not None and henan.carrier == "electricity"
    v = henan.versions[0]
    assert v.verified is False and "豫发改价管〔2024〕283号" in v.source
    slots = v.month_slots()
    assert sorted(slots) == list(range(1, 13))

    def hours(month: int, period: str) -> list[float]:
        return [i / 4 for i, p in enumerate(slots[month]) if p == period]

    assert hours(7, "sharp") == [h / 4 for h in range(20 * 4, 23 * 4)]  # July 20-23
    assert hours(1, "sharp") == [h / 4 for h in range(17 * 4, 19 * 4)]  # January 17-19
    assert hours(2, "sharp") == []
    assert hours(4, "valley") == [h / 4 for h in [*range(0, 24), *range(44, 56)]]  # 0-6, 11-14
    for m in range(1, 13):  # peak (with sharp) is 16-24 in every month
        assert all(slots[m][i] in ("peak", "sharp") for i in range(64, 96)), m
    assert v.ratios is not None and v.ratios.peak == 1.72 and v.ratios.valley == 0.45
    assert v.ratios.sharp == pytest.approx(1.72 * 1.2)
    # the price of a period is floating × ratio + fixed, per voltage class and month
    prices = {(p.voltage_class, p.period, str(p.price_from)): p for p in price_rows(henan, v)}
    peak = prices[("kv1_10", "peak", "2024-07-01")]
    assert peak.price == pytest.approx(0.43 * 1.72 + 0.21) and peak.verified is False
    carriers = {t.carrier for t in tf.tariffs}
    assert {"electricity", "natural_gas", "water", "steam"} <= carriers


def test_spans_are_quarter_hours() -> None:
    assert parse_span("00:00-24:00") == (0, 96)
    assert parse_span("07:30-08:45") == (30, 35)
    for bad in ("7:00-8:00", "07:10-08:00", "22:00-06:00", "08:00-08:00"):
        with pytest.raises(ValueError):
            parse_span(bad)


def _bad(tmp_path: Path, old: str, new: str) -> str:
    assert old in TEST_TARIFFS
    with pytest.raises(TariffError) as ei:
        load_tariffs(write_test_tariffs(tmp_path, TEST_TARIFFS.replace(old, new, 1)))
    return str(ei.value)


def test_bad_files_are_refused_naming_field_and_value(tmp_path: Path) -> None:
    msg = _bad(tmp_path, 'sharp: ["19:00-20:00"]', 'sharp: ["18:00-20:00"]')
    assert (
        "tariffs[0].versions[0].schedule[0]" in msg
        and "17:00-19:00 of peak overlaps sharp at slot 18:00" in msg
    )
    msg = _bad(tmp_path, 'valley: ["00:00-08:00"]', 'valley: ["22:00-08:00"]')
    assert "valley" in msg and "'22:00-08:00'" in msg
    msg = _bad(tmp_path, "months: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]", "months: [1, 2, 3]")
    assert "every month 1-12 needs a schedule" in msg and "[4, 5, 6, 7, 8, 9, 10, 11, 12]" in msg
    msg = _bad(tmp_path, "kv35: {floating: 0.5, fixed: 0.05}", "kv66: {floating: 0.5, fixed: 0.05}")
    assert "energy_prices[0].classes" in msg and "'kv66'" in msg and "unknown voltage class" in msg
    msg = _bad(tmp_path, "valid_from: 2024-08-01", "valid_from: 2024-07-01")
    assert "versions[1].valid_from" in msg and "overlaps version 'v1'" in msg
    msg = _bad(tmp_path, "floating: 0.6}", "floating: -0.6}")
    assert "floating" in msg and "-0.6" in msg


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = TEST_TARIFFS.replace("kv35: {floating", "kv99: {floating").replace("        unit: m3\n", "")
    with pytest.raises(TariffError) as ei:
        load_tariffs(write_test_tariffs(tmp_path, text))
    assert len(ei.value.problems) == 2
    assert {p.path for p in ei.value.problems} == {
        "tariffs[0].versions[0].energy_prices[0].classes",
        "tariffs[1].versions[0].unit",
    }
