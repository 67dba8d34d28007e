"""The report font and its embedding (issue 15): the cached font carries TrueType outlines close to
the CFF ones it was converted from, and a Chinese PDF embeds it once, as TrueType, with its text
extractable. No database: the report is built in memory; the font is the real Noto Sans CJK."""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fontTools.pens.boundsPen import BoundsPen
from fontTools.ttLib import TTFont
from pypdf import PdfReader

from reports import Period, render_pdf
from reports._fonts import _build, source_font
from reports._model import CompletenessRow, CostRow, DailyRow, EnergyRow, FirmInfo, ParkInfo, Report

TZ = ZoneInfo("Asia/Shanghai")
SAMPLE = "企业能源月度报告0Ag,"


def _report() -> Report:
    period = Period(2025, 11)
    park = ParkInfo("p", "字体园区", "Font park", "Asia/Shanghai", 100.0)
    firm = FirmInfo("p-f0", "鑫瑞精密制造有限公司", "Xinrui", None, None, 20.0)
    daily = [
        DailyRow(period.start + timedelta(days=d), "electricity", "import", "kWh", 500.0 + d)
        for d in range(30)
    ]
    kwh = sum(d.quantity for d in daily)
    return Report(
        park=park,
        firm=firm,
        period=period,
        generated_at=datetime(2025, 12, 1, 8, tzinfo=TZ),
        firms=[firm],
        energy=[EnergyRow("electricity", "import", "kWh", kwh, 0.1229, kwh * 0.1229 / 1000, True, False)],
        daily=daily,
        costs=[
            CostRow(
                date(2025, 11, 1),
                "electricity",
                "peak",
                kwh,
                "kWh",
                0.86,
                "yuan/kWh",
                kwh * 0.86,
                "t 1",
                True,
                False,
            )
        ],
        completeness=[CompletenessRow("p-f0", "p-f0-g", "main", "meter", 900.0, 2880, 2784)],
        tariffs=["t 1"],
    )


@pytest.fixture(scope="module")
def cut(tmp_path_factory: pytest.TempPathFactory) -> tuple[TTFont, TTFont]:
    """A small cut of the source font twice: as cached now (TrueType) and with its CFF outlines."""
    src, index = source_font()
    cps = frozenset(ord(c) for c in SAMPLE)
    d = tmp_path_factory.mktemp("fonts")
    _build(d / "t.ttf", src, index, cps, "Test Sans")
    _build(d / "c.otf", src, index, cps, "Test Sans CFF", truetype=False)
    return TTFont(str(d / "t.ttf")), TTFont(str(d / "c.otf"))


def test_cached_font_has_truetype_outlines_and_a_lean_cmap(cut: tuple[TTFont, TTFont]) -> None:
    tt, cff = cut
    assert "glyf" in tt and "loca" in tt and "CFF " not in tt and "CFF " in cff
    assert tt.sfntVersion == "\x00\x01\x00\x00" and tt["maxp"].tableVersion == 0x00010000
    assert [(t.platformID, t.platEncID) for t in tt["cmap"].tables] == [(3, 1)]
    assert tt["post"].formatType == 2.0
    assert set(tt.getBestCmap()) == {ord(c) for c in SAMPLE}
    assert tt.getGlyphOrder() == cff.getGlyphOrder()


def test_converted_outlines_stay_within_a_font_unit_or_two(cut: tuple[TTFont, TTFont]) -> None:
    tt, cff = cut
    tgs, cgs = tt.getGlyphSet(), cff.getGlyphSet()
    for ch in SAMPLE:
        name = tt.getBestCmap()[ord(ch)]
        assert tgs[name].width == cgs[name].width, ch
        tb, cb = BoundsPen(tgs), BoundsPen(cgs)
        tgs[name].draw(tb)
        cgs[name].draw(cb)
        assert tb.bounds is not None and cb.bounds is not None
        assert max(abs(a - b) for a, b in zip(tb.bounds, cb.bounds, strict=True)) <= 2, (
            ch,
            tb.bounds,
            cb.bounds,
        )
        assert tt["hmtx"][name][1] == tt["glyf"][name].xMin


def test_chinese_pdf_embeds_one_truetype_subset_with_extractable_text(tmp_path: Path) -> None:
    rep = _report()
    reader = PdfReader(io.BytesIO(render_pdf(rep, "zh")))
    text = "\n".join(p.extract_text() for p in reader.pages)
    assert "企业能源月度报告" in text and "鑫瑞精密制造有限公司" in text and "2025年11月" in text
    fonts = {}
    for page in reader.pages:
        for ref in page["/Resources"]["/Font"].values():  # type: ignore[index]
            font = ref.get_object()
            fonts[str(font["/BaseFont"])] = font
    # before: Chinese went to a second subset of the same font (matplotlib sized subsets by ps.fonttype)
    assert len(fonts) == 1, sorted(fonts)
    ((name, font),) = fonts.items()
    assert name.endswith("+ParkPulseReportSans-Regular")
    cid = font["/DescendantFonts"][0].get_object()
    assert cid["/Subtype"] == "/CIDFontType2"
    data = cid["/FontDescriptor"].get_object()["/FontFile2"].get_object().get_data()
    assert data[:4] == b"\x00\x01\x00\x00"  # TrueType outlines, as FontFile2 requires (not b"OTTO": CFF)
    embedded = TTFont(io.BytesIO(data))
    assert "glyf" in embedded and len(embedded.getGlyphOrder()) < 200  # a subset, not the whole cut
