"""The report as a PDF (matplotlib, A4 pages): tables drawn as text grids, a daily-energy chart and
a cost-by-period chart, CJK text in an embedded font (Type 42, subset).

Everything on a page is laid out here, in figure fractions, and drawn by two light artists
(reports/_pdf_draw.py): the text lines and table cells with one renderer call each (no Text artist,
no layout pass per cell), and the charts as bars, a frame and fixed ticks (no Axes, no tick
locator). A Text artist per cell and two Axes cost about half of a render (bench/report_render.py).
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.typing import RcKeyType

from reports._fonts import report_font
from reports._model import Report
from reports._pdf_draw import Cells, Chart, bar_chart
from reports._texts import check_lang, note_text, t

A4 = (8.27, 11.69)
MAX_ROWS = 18  # rows of one table in the PDF; the rest are in the Excel version


def _num(v: float | int | None, digits: int = 2) -> str:
    if v is None:
        return "—"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:,.{digits}f}"


def _ts(v: datetime | None, tz: ZoneInfo) -> str:
    return "—" if v is None else v.astimezone(tz).strftime("%Y-%m-%d %H:%M")


HEAD = "#1f3b73"  # headings and table headers


class _Page:
    """A page being filled from the top; `y` is the next free line (figure fraction)."""

    def __init__(self) -> None:
        self.fig = Figure(figsize=A4)
        self.cells = Cells(self.fig)
        self.y = 0.95

    def line(self, text: str, size: float = 9, bold: bool = False, gap: float = 0.018) -> None:
        self.cells.add(0.06, self.y, text, size, HEAD if bold else "black")
        self.y -= gap

    def table(
        self, headers: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[float], lang: str
    ) -> None:
        more = len(rows) - MAX_ROWS
        shown = list(rows[:MAX_ROWS])
        x0 = 0.06
        xs = [x0]
        for w in widths[:-1]:
            xs.append(xs[-1] + w)
        for r, row in enumerate([headers, *shown]):
            for x, cell in zip(xs, row, strict=False):
                self.cells.add(x, self.y, cell, 7, HEAD if r == 0 else "black")
            self.y -= 0.0155
        if more > 0:
            self.line(t("more_rows", lang, n=more), size=7)
        self.y -= 0.008


def _save(pdf: PdfPages, fig: Figure) -> None:
    save: Callable[[Figure], None] = pdf.savefig  # matplotlib's PdfPages.savefig is not annotated
    save(fig)


def _name(rep: Report, lang: str) -> str:
    if rep.firm is not None:
        return (rep.firm.name_en or rep.firm.name) if lang == "en" else rep.firm.name
    return (rep.park.name_en or rep.park.name) if lang == "en" else rep.park.name


def _page_one(pdf: PdfPages, rep: Report, lang: str) -> None:
    p = _Page()
    tz = ZoneInfo(rep.park.timezone)
    kind = t(rep.period.kind, lang)
    p.line(t("title_firm" if rep.firm else "title_park", lang, kind=kind), size=15, bold=True, gap=0.03)
    p.line(f"{_name(rep, lang)} ({rep.subject_id})    {t('period', lang)}: {rep.period.label(lang)}", size=10)
    p.line(f"{t('generated', lang)}: {_ts(rep.generated_at, tz)}", size=8)
    p.line(f"{t('rule_set', lang)}: {'; '.join(rep.rule_sets) or t('none', lang)}", size=8)
    p.line(f"{t('tariff', lang)}: {'; '.join(rep.tariffs) or t('none', lang)}", size=8)
    if rep.no_tariff:
        p.line(
            t(
                "no_tariff",
                lang,
                firms=", ".join(rep.no_tariff[:12]) + (" …" if len(rep.no_tariff) > 12 else ""),
            ),
            size=8,
        )
    p.line(
        f"{t('tce', lang)}: {_num(rep.total_tce(), 3)}    {t('cost_yuan', lang)}: {_num(rep.total_cost())}",
        size=10,
        bold=True,
        gap=0.03,
    )
    p.line(t("energy", lang), size=11, bold=True)
    p.table(
        [t(k, lang) for k in ("carrier", "direction", "quantity", "unit", "coef", "tce")],
        [
            [
                t(e.carrier, lang),
                t(e.direction, lang),
                _num(e.quantity),
                e.unit,
                _num(e.kgce_per_unit, 4),
                _num(e.tce, 3),
            ]
            for e in rep.energy
        ],
        (0.14, 0.1, 0.18, 0.08, 0.2, 0.16),
        lang,
    )
    p.line(t("kpi", lang), size=11, bold=True)
    p.table(
        [
            t(k, lang)
            for k in ("firm_id", "year_col", "energy_tce", "intensity", "intensity_change", "mu_tax", "class")
        ],
        [
            [
                k.firm_id,
                str(k.year),
                _num(k.energy_tce, 1),
                _num(k.intensity, 4),
                _num(k.intensity_change_pct, 1),
                _num(k.mu_tax),
                k.mu_class or "—",
            ]
            for k in rep.kpis
        ],
        (0.16, 0.07, 0.13, 0.16, 0.15, 0.17, 0.1),
        lang,
    )
    for n in rep.notes[:6]:
        p.line(note_text(n, lang), size=7, gap=0.014)
    elec = sorted(
        (d.day, d.quantity) for d in rep.daily if d.carrier == "electricity" and d.direction == "import"
    )
    top = max(p.y - 0.04, 0.3)
    days = (rep.period.end - rep.period.start).days
    values = [0.0] * days
    for d, q in elec:
        if 0 <= (d - rep.period.start).days < days:
            values[(d - rep.period.start).days] += q
    step = next((k for k in (1, 2, 5, 10, 20, 50, 100) if days / k <= 12), 100)
    labels = [str(i + 1) if i == 0 or (i + 1) % step == 0 else "" for i in range(days)]
    rect = (0.1, 0.06, 0.84, min(0.24, top - 0.1))
    bar_chart(p.fig, p.cells, Chart(rect, labels, values, "#3b7dd8", t("chart_daily", lang), t("day", lang)))
    _save(pdf, p.fig)


def _page_two(pdf: PdfPages, rep: Report, lang: str) -> None:
    p = _Page()
    tz = ZoneInfo(rep.park.timezone)
    p.line(t("cost", lang), size=11, bold=True)
    by_period: dict[str, float] = defaultdict(float)
    for c in rep.costs:
        if c.cost_yuan is not None:
            by_period[t(c.period if c.carrier == "electricity" else c.carrier, lang)] += c.cost_yuan
    p.table(
        [
            t(k, lang)
            for k in ("cost_month", "carrier", "tou_period", "quantity", "unit", "price", "cost_yuan")
        ],
        [
            [
                c.month.strftime("%Y-%m"),
                t(c.carrier, lang),
                t(c.period, lang),
                _num(c.quantity),
                c.unit or "",
                _num(c.price, 4),
                _num(c.cost_yuan),
            ]
            for c in rep.costs
        ],
        (0.1, 0.12, 0.12, 0.16, 0.07, 0.12, 0.16),
        lang,
    )
    if rep.no_tariff:
        p.line(t("no_tariff", lang, firms=", ".join(rep.no_tariff[:12])), size=8)
    p.line(t("alerts", lang), size=11, bold=True)
    p.table(
        [
            t(k, lang)
            for k in (
                "alert_id",
                "device",
                "metric",
                "state",
                "opened",
                "resolved",
                "valid_hours",
                "exceeded_hours",
            )
        ],
        [
            [
                str(a.alert_id),
                a.device_id or "",
                a.metric or "",
                t("closed" if a.resolved_at else "open", lang),
                _ts(a.opened_at, tz),
                _ts(a.resolved_at, tz),
                str(a.valid_hours),
                str(a.exceeded_hours),
            ]
            for a in rep.alerts
        ],
        (0.08, 0.1, 0.12, 0.08, 0.17, 0.17, 0.1, 0.1),
        lang,
    )
    expected = sum(c.expected for c in rep.completeness)
    received = sum(min(c.received, c.expected) for c in rep.completeness)
    share = 1.0 if expected == 0 else received / expected
    p.line(
        f"{t('completeness', lang)}: {share:.1%} ({_num(received)} / {_num(expected)})", size=11, bold=True
    )
    p.line(t("completeness_def", lang), size=7)
    p.table(
        [t(k, lang) for k in ("gateway", "device", "poll", "expected", "received", "share")],
        [
            [
                c.gateway_id,
                c.device_id,
                _num(c.poll_interval_s, 0),
                _num(c.expected),
                _num(c.received),
                f"{c.share:.1%}",
            ]
            for c in rep.completeness
            if c.share < 1.0
        ],
        (0.22, 0.16, 0.12, 0.14, 0.14, 0.1),
        lang,
    )
    p.line(t("gaps", lang), size=11, bold=True)
    p.table(
        [t(k, lang) for k in ("gateway", "device", "start", "end", "count", "reason")],
        [
            [
                g.gateway_id,
                g.device_id or "",
                _ts(g.start, tz),
                _ts(g.end, tz),
                _num(g.count),
                (g.reason or "")[:40],
            ]
            for g in rep.gaps
        ],
        (0.18, 0.1, 0.17, 0.17, 0.08, 0.3),
        lang,
    )
    if by_period and p.y > 0.25:
        rect = (0.1, 0.05, 0.84, min(0.2, p.y - 0.1))
        chart = Chart(rect, list(by_period), list(by_period.values()), "#d8843b", t("chart_cost", lang))
        bar_chart(p.fig, p.cells, chart)
    _save(pdf, p.fig)


def _scorecard_page(pdf: PdfPages, rep: Report, lang: str) -> None:
    p = _Page()
    p.line(t("scorecard", lang), size=11, bold=True)
    p.table(
        [t(k, lang) for k in ("indicator", "value", "target", "unit", "met")],
        [
            [s.indicator, _num(s.value), _num(s.target), s.unit or "", t("yes" if s.met else "no", lang)]
            for s in rep.scorecard
        ],
        (0.34, 0.16, 0.16, 0.14, 0.1),
        lang,
    )
    _save(pdf, p.fig)


def _chars(rep: Report) -> set[str]:
    texts = [rep.park.name, rep.park.name_en or ""] + [f.name + (f.name_en or "") for f in rep.firms]
    texts += [g.reason or "" for g in rep.gaps] + [s.indicator for s in rep.scorecard]
    return set("".join(texts))


def _rc(family: str) -> dict[RcKeyType, Any]:
    """matplotlib settings of a report PDF.

    The PDF backend sizes its font subsets by `ps.fonttype`, not `pdf.fonttype` (matplotlib 3.11,
    backend_pdf.PdfFile.__init__): with the default 3 every character past U+00FF goes to extra
    subsets of 256, so a Chinese report embedded (and cut) the same font twice. 42 for both: one
    Type 42 (CIDFontType2) subset per font and document.
    """
    return {
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
        "font.family": [family],
        "axes.unicode_minus": False,
        "pdf.compression": 6,
    }


def render_pdf(rep: Report, lang: str = "zh") -> bytes:
    """The PDF's bytes (two pages, a third with the scorecard for a park)."""
    check_lang(lang)
    return _render(rep, lang, _rc(report_font(_chars(rep))))


def _render(rep: Report, lang: str, rc: dict[RcKeyType, Any]) -> bytes:
    """render_pdf under the matplotlib settings `rc` (bench/report_render.py compares settings)."""
    buf = io.BytesIO()
    with (
        matplotlib.rc_context(rc),
        PdfPages(
            buf, metadata={"Title": f"{rep.subject_id} {rep.period.key}", "Creator": "ParkPulse"}
        ) as pdf,
    ):
        _page_one(pdf, rep, lang)
        _page_two(pdf, rep, lang)
        if rep.scope == "park" and rep.scorecard:
            _scorecard_page(pdf, rep, lang)
    return buf.getvalue()
