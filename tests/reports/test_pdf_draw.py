"""The report PDF's light drawing (reports/_pdf_draw.py) and its render workers (reports/_workers.py).

No database: reports built in memory, the real report font, real matplotlib PDF and Agg renderers,
real worker processes (killed for real in the crash test)."""

from __future__ import annotations

import io
import os
import signal
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from pypdf import PdfReader

from reports import Period, RenderJob, ReportError, render_pdf, run_jobs
from reports._model import DailyRow, EnergyRow, FirmInfo, ParkInfo, Report
from reports._pdf_draw import Cells, Chart, bar_chart, nice_ticks, tick_label
from reports._workers import WorkerPool

TZ = ZoneInfo("Asia/Shanghai")


def _report(period: Period, firm_id: str = "p-f0") -> Report:
    park = ParkInfo("p", "绘图园区", "Draw park", "Asia/Shanghai", 100.0)
    firm = FirmInfo(firm_id, "华泰精工有限公司", "Huatai", None, None, 20.0)
    days = (period.end - period.start).days
    daily = [
        DailyRow(period.start + timedelta(days=d), "electricity", "import", "kWh", 100.0 + d)
        for d in range(days)
    ]
    kwh = sum(d.quantity for d in daily)
    return Report(
        park=park,
        firm=firm,
        period=period,
        generated_at=datetime(2026, 1, 2, 8, tzinfo=TZ),
        firms=[firm],
        energy=[EnergyRow("electricity", "import", "kWh", kwh, 0.1229, kwh * 0.1229 / 1000, True, False)],
        daily=daily,
        no_tariff=[firm_id],
    )


@pytest.mark.parametrize(
    ("lo", "hi", "labels"),
    [
        (0.0, 629.0, ["0", "100", "200", "300", "400", "500", "600", "700"]),
        (0.0, 4756.0, ["0", "1000", "2000", "3000", "4000", "5000"]),
        (0.0, 0.37, ["0", "0.05", "0.10", "0.15", "0.20", "0.25", "0.30", "0.35", "0.40"]),
        (-5.0, 12.0, ["-5.0", "-2.5", "0", "2.5", "5.0", "7.5", "10.0", "12.5"]),
        (0.0, 2.4, ["0", "0.5", "1.0", "1.5", "2.0", "2.5"]),
    ],
)
def test_ticks_are_round_and_cover_the_values(lo: float, hi: float, labels: list[str]) -> None:
    ticks = nice_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi
    assert [tick_label(v, ticks) for v in ticks] == labels


def test_ticks_of_nothing_or_nonsense_are_zero_to_one() -> None:
    assert nice_ticks(0.0, 0.0) == [0.0, 1.0] and nice_ticks(0.0, float("nan")) == [0.0, 1.0]


def test_cells_come_out_in_order_in_the_pdf_and_at_the_top_in_agg() -> None:
    fig = Figure(figsize=(4, 4))
    cells = Cells(fig)
    cells.add(0.1, 0.95, "第一行 first", 10)
    cells.add(0.1, 0.85, "second 第二行", 10, color="#1f3b73")
    cells.add(0.9, 0.75, "right", 8, align="right")
    cells.add(0.1, 0.65, "", 8)  # nothing to draw: left out
    assert cells.texts() == ["第一行 first", "second 第二行", "right"]
    buf = io.BytesIO()
    with PdfPages(buf) as pdf:
        pdf.savefig(fig)
    text = PdfReader(io.BytesIO(buf.getvalue())).pages[0].extract_text()
    assert text.index("first") < text.index("second") < text.index("right")
    # Agg puts its origin at the top (flipy): the text must still be drawn near the top edge
    raw = io.BytesIO()
    fig.savefig(raw, format="rgba", dpi=100)  # through the Agg renderer
    pixels = np.frombuffer(raw.getvalue(), dtype=np.uint8).reshape(400, 400, 4)
    ink = pixels[:, :, :3].min(axis=2) < 128
    rows = np.nonzero(ink.any(axis=1))[0]
    assert rows.size and rows.min() < 0.1 * ink.shape[0] and rows.max() < 0.4 * ink.shape[0]


def test_bar_heights_follow_the_values_on_the_tick_scale() -> None:
    fig = Figure(figsize=(4, 4))
    cells = Cells(fig)
    bar_chart(fig, cells, Chart((0.1, 0.1, 0.8, 0.8), ["a", "", "c"], [10.0, 25.0, 0.0], "#3b7dd8", "T", "x"))
    (bars,) = [a for a in fig.get_children() if isinstance(a, PolyCollection)]
    tops = [float(np.asarray(p.vertices)[:, 1].max()) - 0.1 for p in bars.get_paths()]
    # ticks 0..25 in steps of 5: the 25 bar reaches the top of the frame, the 10 bar 40 % of it
    assert tops[1] == pytest.approx(0.8) and tops[0] == pytest.approx(0.32) and tops[2] == pytest.approx(0.0)
    assert cells.texts() == ["0", "5", "10", "15", "20", "25", "a", "c", "T", "x"]


def test_a_yearly_pdf_labels_its_days_sparsely_and_keeps_its_labels() -> None:
    rep = _report(Period(2025, None))
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(render_pdf(rep, "en"))).pages)
    assert "Firm energy report (yearly)" in text and "no tariff assigned" in text
    assert "1 50 100 150 200 250 300 350" in text
    assert f"{rep.energy[0].quantity:,.2f}" in text


def test_a_render_error_in_a_worker_is_raised_here_and_the_workers_end(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    reps = [_report(Period(2025, 11), f"p-f{i}") for i in range(3)]
    jobs = [RenderJob(r, (("pdf", "zh", tmp_path / f"{r.subject_id}.pdf"),)) for r in reps]
    jobs.append(RenderJob(reps[0], (("pdf", "zh", blocker / "x.pdf"),)))  # its folder cannot be made
    with pytest.raises((FileExistsError, NotADirectoryError)):
        list(run_jobs(jobs, workers=2))
    assert not list(tmp_path.rglob(".part-*"))
    done = list(run_jobs(jobs[:3], workers=2))
    assert sorted(d.subject for d in done) == ["p-f0", "p-f1", "p-f2"] and os.getpid() not in {
        d.pid for d in done
    }
    assert all(PdfReader(p).pages for d in done for p in d.paths)


def test_a_worker_that_dies_is_an_error_naming_it(tmp_path: Path) -> None:
    pool = WorkerPool(1)
    try:
        (pid,) = pool.pids
        rep = _report(Period(2025, None))
        pool.submit(RenderJob(rep, (("pdf", "zh", tmp_path / "year.pdf"),)))
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ReportError, match=rf"^render worker {pid} exited with code -9$"):
            pool.results()
    finally:
        pool.close()


def test_a_worker_renders_without_the_reading_side_loaded(tmp_path: Path) -> None:
    """The worker skips reports/__init__.py: psycopg (libpq) is not in its memory, matplotlib is."""
    pool = WorkerPool(1)
    try:
        (pid,) = pool.pids
        pool.submit(RenderJob(_report(Period(2025, 11)), (("pdf", "en", tmp_path / "m.pdf"),)))
        (done,) = pool.results()
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert done.pid == pid and PdfReader(tmp_path / "m.pdf").pages
        assert "ft2font" in maps and "psycopg" not in maps and "libpq" not in maps
    finally:
        pool.close()
