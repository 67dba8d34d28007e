"""Light drawing for the report PDF: text laid out in advance, and bar charts without Axes.

A matplotlib Text artist measures its string and its "lp" reference line on every draw to place it;
the report's tables have ~160 cells a page, all top-aligned on known lines. `Cells` keeps each
string with its position and draws it with one `renderer.draw_text` call, measuring only the
ascent of each font size once (and a string's width only when it is centred or right-aligned).

`bar_chart` draws what the report's two Axes drew (bars, a frame, y ticks at round steps, x labels,
a title and an axis label) as one PolyCollection, one LineCollection and cells: no tick locator,
no tick objects, no title placement pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from matplotlib.artist import Artist
from matplotlib.backend_bases import RendererBase
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

Align = Literal["left", "center", "right"]

INK = "black"
FRAME_LW = 0.8  # points, as matplotlib's axes.linewidth
TICK = 0.006  # tick length, figure fraction


@dataclass(frozen=True)
class _Cell:
    x: float  # figure fraction; the left edge, centre or right edge (align)
    y: float  # figure fraction; the top of the line
    text: str
    size: float
    color: str
    align: Align


class Cells(Artist):
    """Strings at fixed places on a figure (figure fractions, `y` the top of the line)."""

    def __init__(self, fig: Figure) -> None:
        super().__init__()
        self._fig = fig
        self._cells: list[_Cell] = []
        fig.add_artist(self)

    def add(
        self, x: float, y: float, text: str, size: float, color: str = INK, align: Align = "left"
    ) -> None:
        if text:
            self._cells.append(_Cell(x, y, text, size, color, align))

    def texts(self) -> list[str]:
        return [c.text for c in self._cells]

    def draw(self, renderer: RendererBase) -> None:
        if not self.get_visible():
            return
        to_px = self._fig.transFigure.transform
        props: dict[float, tuple[FontProperties, float]] = {}
        # y grows upwards in display space; renderers whose origin is at the top (Agg) say flipy
        flip_h = renderer.get_canvas_width_height()[1] if renderer.flipy() else None
        gc = renderer.new_gc()
        try:
            for c in self._cells:
                if c.size not in props:
                    prop = FontProperties(size=c.size)
                    _, h, d = renderer.get_text_width_height_descent("lp", prop, ismath=False)
                    props[c.size] = (prop, h - d)
                prop, ascent = props[c.size]
                px, py = to_px((c.x, c.y))
                if c.align != "left":
                    w, _, _ = renderer.get_text_width_height_descent(c.text, prop, ismath=False)
                    px -= w if c.align == "right" else w / 2
                gc.set_foreground(c.color)
                base = py - ascent
                renderer.draw_text(gc, px, base if flip_h is None else flip_h - base, c.text, prop, 0.0)
        finally:
            gc.restore()


def nice_ticks(lo: float, hi: float, most: int = 8) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 × 10^k apart) covering lo..hi, at most `most` + 1 of them."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [0.0, 1.0]
    raw = (hi - lo) / most
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * mag >= raw)
    first = math.floor(lo / step + 1e-9) * step
    n = math.ceil((hi - first) / step - 1e-9)
    return [first + i * step for i in range(n + 1)]


def tick_label(v: float, ticks: Sequence[float]) -> str:
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    digits = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    if step == 2.5 * 10 ** math.floor(math.log10(step)) and step < 10:
        digits += 1
    out = f"{v:.{digits}f}"
    return "0" if float(out) == 0 else out


@dataclass(frozen=True)
class Chart:
    rect: tuple[float, float, float, float]  # left, bottom, width, height (figure fractions)
    labels: Sequence[str]  # one per bar, "" for an unlabelled bar
    values: Sequence[float]
    color: str
    title: str
    xlabel: str = ""
    font: float = 7  # tick labels


def bar_chart(fig: Figure, cells: Cells, ch: Chart) -> None:
    """Bars of equal width 0.8 slot each (matplotlib's default), a 5 % margin each side."""
    left, bottom, width, height = ch.rect
    n = len(ch.values)
    lo = min(0.0, *ch.values) if n else 0.0
    hi = max(0.0, *ch.values) if n else 1.0
    ticks = nice_ticks(lo, hi if hi > lo else lo + 1.0)
    y0, y1 = ticks[0], ticks[-1]
    slots = max(n, 1)

    def fx(i: float) -> float:  # bar slot i (0-based, centre) → figure x
        return left + width * (0.05 + 0.9 * (i + 0.5) / slots)

    def fy(v: float) -> float:
        return bottom + height * (v - y0) / (y1 - y0)

    half = 0.9 * width * 0.4 / slots
    bars = [
        [(fx(i) - half, fy(0.0)), (fx(i) + half, fy(0.0)), (fx(i) + half, fy(v)), (fx(i) - half, fy(v))]
        for i, v in enumerate(ch.values)
    ]
    fig.add_artist(PolyCollection(bars, facecolors=ch.color, edgecolors="none", transform=fig.transFigure))
    frame = [
        [
            (left, bottom),
            (left + width, bottom),
            (left + width, bottom + height),
            (left, bottom + height),
            (left, bottom),
        ]
    ]
    marks = [[(left - TICK * 0.6, fy(v)), (left, fy(v))] for v in ticks]
    marks += [[(fx(i), bottom), (fx(i), bottom - TICK * 0.6)] for i, lab in enumerate(ch.labels) if lab]
    fig.add_artist(LineCollection(frame + marks, colors=INK, linewidths=FRAME_LW, transform=fig.transFigure))
    line = ch.font / 72 / fig.get_figheight()  # one text line, figure fraction
    for v in ticks:
        cells.add(left - TICK, fy(v) + line * 0.55, tick_label(v, ticks), ch.font, align="right")
    for i, lab in enumerate(ch.labels):
        cells.add(fx(i), bottom - TICK, lab, ch.font, align="center")
    cells.add(left + width / 2, bottom + height + 2.2 * line, ch.title, 9, align="center")
    if ch.xlabel:
        cells.add(left + width / 2, bottom - TICK - 1.6 * line, ch.xlabel, ch.font, align="center")
