"""Benchmark: one monthly PDF report rendered, before and after the light drawing path (issue 15).

    python bench/report_render.py              # 40 renders of each, 1 000 firms projected
    python bench/report_render.py --renders 10 # quicker

No database: firm reports shaped like bench/reports.py's (a month of daily electricity, ten meters'
completeness, a time-of-use cost table for every other firm, notes), built in memory, each firm
with its own Chinese name so the documents' glyph sets differ as real firms' do.

Two ways of drawing rendered alternately in this one process (so load on the machine hits both
alike), same font and settings:
- baseline: as reports/_pdf.py drew before: a matplotlib Text artist per table cell and line, and
  each chart an Axes (bar, set_title, automatic ticks);
- current: reports/_pdf.py as it is (reports/_pdf_draw.py: cells drawn by one artist, charts
  without Axes, fixed ticks).
Printed: the median render time of each, the ratio, the PDFs' median size, the one-off font build
time, the Excel render median, and the projection for 1 000 firms (Excel + PDF, zh) on the CPUs
here: firms × (Excel + PDF) / CPUs, the rendering floor without reading. Each pair of PDFs must
give the same text lines (pypdf; the charts' tick numbers aside, as the ticks differ) and embed the
report font, or the benchmark stops.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from reports import Period, render_xlsx  # noqa: E402
from reports._model import (  # noqa: E402
    CompletenessRow,
    CostRow,
    DailyRow,
    EnergyRow,
    FirmInfo,
    ParkInfo,
    Report,
)

TZ = ZoneInfo("Asia/Shanghai")
PERIOD = Period(2025, 11)
GOAL_S = 60.0
# hanzi for the firms' names: every firm gets a different pair, as real names differ
_NAME_CHARS = "恒通宏达鑫盛华泰新源永兴金鼎瑞丰汇力天成博远中联德润嘉禾启明广安顺和长江东方海川"


def firm_report(i: int) -> Report:
    """Firm `i`'s November 2025 report, in memory."""
    a = _NAME_CHARS[i % len(_NAME_CHARS)]
    b = _NAME_CHARS[(i * 7 + 3) % len(_NAME_CHARS)]
    park = ParkInfo("bench", "基准园区", "Bench park", "Asia/Shanghai", 800.0)
    firm = FirmInfo(f"bench-f{i:04d}", f"{a}{b}制造有限公司", f"Firm {i}", None, None, 50.0)
    daily = [
        DailyRow(PERIOD.start + timedelta(days=d), "electricity", "import", "kWh", 120.0 * (5 + i % 17) + d)
        for d in range(30)
    ]
    kwh = sum(d.quantity for d in daily)
    costs = []
    if i % 2 == 0:
        for k, per in enumerate(("sharp", "peak", "flat", "valley")):
            q, price = kwh * (0.1, 0.3, 0.35, 0.25)[k], (1.02, 0.86, 0.57, 0.29)[k]
            costs.append(
                CostRow(
                    date(2025, 11, 1),
                    "electricity",
                    per,
                    q,
                    "kWh",
                    price,
                    "yuan/kWh",
                    q * price,
                    "henan-industrial-tou 2025-06",
                    True,
                    False,
                )
            )
    comp = [
        CompletenessRow(
            firm.firm_id, f"{firm.firm_id}-g", f"m{j:03d}", "meter", 3600.0, 720, 720 - (j == i % 10)
        )
        for j in range(10)
    ]
    return Report(
        park=park,
        firm=firm,
        period=PERIOD,
        generated_at=datetime(2025, 12, 1, 8, tzinfo=TZ),
        firms=[firm],
        energy=[EnergyRow("electricity", "import", "kWh", kwh, 0.1229, kwh * 0.1229 / 1000, True, False)],
        daily=daily,
        costs=costs,
        completeness=comp,
        no_tariff=[] if costs else [firm.firm_id],
        tariffs=["henan-industrial-tou 2025-06"] if costs else [],
        notes=["no_results:2025"],
    )


@contextlib.contextmanager
def artists_per_cell() -> Iterator[None]:
    """reports/_pdf.py drawing as before: a Text artist per string, an Axes per chart."""
    from matplotlib.figure import Figure

    from reports import _pdf
    from reports._pdf_draw import Align, Chart

    class TextCells:
        def __init__(self, fig: Figure) -> None:
            self.fig = fig

        def add(
            self, x: float, y: float, text: str, size: float, color: str = "black", align: Align = "left"
        ) -> None:
            self.fig.text(x, y, text, fontsize=size, va="top", ha=align, color=color)

    def axes_chart(fig: Figure, cells: object, ch: Chart) -> None:
        ax = fig.add_axes(ch.rect)
        ax.bar(range(len(ch.values)), list(ch.values), color=ch.color)
        shown = [(i, lab) for i, lab in enumerate(ch.labels) if lab]
        ax.set_xticks([i for i, _ in shown], [lab for _, lab in shown])
        if ch.xlabel:
            ax.set_xlabel(ch.xlabel, fontsize=7)
        ax.set_title(ch.title, fontsize=9)
        ax.tick_params(labelsize=7)

    ns = vars(_pdf)  # the names reports/_pdf.py draws with, swapped for the old way meanwhile
    saved = ns["Cells"], ns["bar_chart"]
    ns["Cells"], ns["bar_chart"] = TextCells, axes_chart
    try:
        yield
    finally:
        ns["Cells"], ns["bar_chart"] = saved


def _lines(text: str) -> list[str]:
    """The PDF's text lines without the charts' tick numbers."""
    return sorted(x for x in text.splitlines() if x.strip() and not set(x) <= set("0123456789 .,-"))


def current_font_build_s(tmp: Path) -> float:
    """One build of the current cached font (TrueType outlines), into a scratch file: one-off cost."""
    from reports import _fonts

    src, index = _fonts.source_font()
    t = time.perf_counter()
    _fonts._build(tmp / "report-sans-glyf.ttf", src, index, _fonts._base_chars(), "Scratch Sans")
    return time.perf_counter() - t


def pdf_text_and_fonts(body: bytes) -> tuple[str, set[str]]:
    from pypdf import PdfReader

    pages = PdfReader(io.BytesIO(body)).pages
    fonts = {
        str(f.get_object()["/BaseFont"])
        for p in pages
        for f in p["/Resources"]["/Font"].values()  # type: ignore[index]
    }
    return "\n".join(p.extract_text() for p in pages), fonts


def timed(fn: Callable[[Report], bytes], rep: Report) -> tuple[float, bytes]:
    t = time.perf_counter()
    body = fn(rep)
    return time.perf_counter() - t, body


def main() -> None:
    from reports import _pdf

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--renders", type=int, default=40, help="renders of each setting (different firms)")
    ap.add_argument("--firms", type=int, default=1000, help="firms in the projection")
    a = ap.parse_args()
    cpus = len(os.sched_getaffinity(0))
    print(f"{cpus} CPUs, load average {os.getloadavg()[0]:.1f} before the run", flush=True)
    reps = [firm_report(i) for i in range(a.renders)]
    with tempfile.TemporaryDirectory(prefix="pp-bench-render-") as tmp:
        build_s = current_font_build_s(Path(tmp))

        def baseline(r: Report) -> bytes:
            with artists_per_cell():
                return _pdf.render_pdf(r, "zh")

        settings: dict[str, Callable[[Report], bytes]] = {
            "baseline": baseline,
            "current": lambda r: _pdf.render_pdf(r, "zh"),
        }
        for fn in settings.values():  # first renders load matplotlib, fonts, caches
            fn(reps[0])
        times: dict[str, list[float]] = {k: [] for k in settings}
        sizes: dict[str, list[int]] = {k: [] for k in settings}
        for i, rep in enumerate(reps):
            order = list(settings) if i % 2 == 0 else list(reversed(settings))
            bodies = {}
            for k in order:
                s, bodies[k] = timed(settings[k], rep)
                times[k].append(s)
                sizes[k].append(len(bodies[k]))
            if i < 5:  # the same text, the font embedded
                (bt, _), (ct, cf) = (
                    pdf_text_and_fonts(bodies["baseline"]),
                    pdf_text_and_fonts(bodies["current"]),
                )
                if (
                    _lines(bt) != _lines(ct)
                    or not any("ParkPulseReportSans" in f for f in cf)
                    or rep.firm is None
                    or rep.firm.name not in ct
                ):
                    raise SystemExit(f"PDFs differ or lack the font for {rep.subject_id}")
        xlsx = [timed(lambda r: render_xlsx(r, "zh"), r)[0] for r in reps[: max(a.renders // 4, 5)]]
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    xlsx_ms = statistics.median(xlsx) * 1000
    proj = {k: a.firms * (xlsx_ms + med[k]) / 1000 / cpus for k in med}
    for k in settings:
        print(
            f"{k}: PDF render median {med[k]:.1f} ms over {len(times[k])} firms, "
            f"median size {statistics.median(sizes[k]) / 1024:.0f} KiB"
        )
    print(f"ratio baseline / current: {med['baseline'] / med['current']:.2f}")
    print(f"font cache build (once per machine): {build_s:.1f} s")
    print(f"Excel render median {xlsx_ms:.1f} ms over {len(xlsx)} firms")
    print(
        f"projected render time of {a.firms} firms (Excel + PDF, zh) on {cpus} CPUs, without the read: "
        f"baseline {proj['baseline']:.1f} s, current {proj['current']:.1f} s (goal for the whole run < {GOAL_S:.0f} s)"
    )
    print(
        json.dumps(
            {
                "renders": a.renders,
                "cpus": cpus,
                "pdf_ms_median_baseline": round(med["baseline"], 1),
                "pdf_ms_median_current": round(med["current"], 1),
                "ratio": round(med["baseline"] / med["current"], 2),
                "pdf_kib_median_baseline": round(statistics.median(sizes["baseline"]) / 1024, 1),
                "pdf_kib_median_current": round(statistics.median(sizes["current"]) / 1024, 1),
                "font_build_s": round(build_s, 1),
                "xlsx_ms_median": round(xlsx_ms, 1),
                "projected_render_s_baseline": round(proj["baseline"], 1),
                "projected_render_s_current": round(proj["current"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
