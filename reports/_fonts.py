"""A CJK font matplotlib can embed in a PDF quickly.

Debian's fonts-noto-cjk ships Noto Sans CJK as a CFF-based .ttc of some 65,000 glyphs; matplotlib
embeds it (Type 42, subset by fontTools) but subsetting that file takes about a second per PDF.
So once per machine a subset is cut from it: ASCII, CJK punctuation, full-width forms and the
6,763 hanzi of GB 2312, without layout tables, under its own family name, cached on disk. A
report with a character outside it (a rare name) gets a second subset that adds its characters.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path

from matplotlib import font_manager

from reports.errors import ReportError

SOURCES = (
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "Noto Sans SC",
    "WenQuanYi Zen Hei",
    "Droid Sans Fallback",
)
_FAMILY = "ParkPulse Report Sans"
_loaded: dict[str, tuple[str, frozenset[int]]] = {}  # cache key -> (family, code points)


def _cache_dir() -> Path:
    base = os.environ.get("PARKPULSE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "parkpulse"
    )
    return Path(base) / "fonts"


def source_font() -> tuple[str, int]:
    """(file, face index) of the first CJK family installed, by preference."""
    for family in SOURCES:
        for f in font_manager.fontManager.ttflist:
            if f.name == family and f.weight in (400, "normal", "regular"):
                return f.fname, int(getattr(f, "index", 0) or 0)
    raise ReportError(
        "no CJK font for the PDF: install the Debian package fonts-noto-cjk (or one of: "
        + ", ".join(SOURCES)
        + ")"
    )


@functools.cache
def _base_chars() -> frozenset[int]:
    cps = (
        set(range(0x20, 0x7F))
        | set(range(0xA0, 0x180))
        | set(range(0x2000, 0x2070))
        | set(range(0x2150, 0x2200))
    )
    cps |= set(range(0x3000, 0x3040)) | set(range(0xFF00, 0xFFF0)) | {0x00B2, 0x00B3, 0x2070, 0x2074, 0x2075}
    for cp in range(0x4E00, 0xA000):
        try:
            chr(cp).encode("gb2312")
        except UnicodeEncodeError:
            continue
        cps.add(cp)
    return frozenset(cps)


def _build(path: Path, src: str, index: int, cps: frozenset[int], family: str) -> None:
    from fontTools import subset
    from fontTools.ttLib import TTFont

    font = TTFont(src, fontNumber=index, lazy=True)
    opts = subset.Options()
    opts.layout_features = []
    opts.notdef_outline = True
    opts.name_IDs = [0, 1, 2, 3, 4, 5, 6]
    opts.drop_tables += ["GSUB", "GPOS", "GDEF", "BASE", "VORG", "vhea", "vmtx", "DSIG"]
    sub = subset.Subsetter(opts)
    sub.populate(unicodes=sorted(cps))
    sub.subset(font)
    for rec in font["name"].names:
        if rec.nameID in (1, 4, 16):
            rec.string = family
        elif rec.nameID == 6:
            rec.string = family.replace(" ", "") + "-Regular"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".otf")
    os.close(fd)
    font.save(tmp)
    os.replace(tmp, path)


def report_font(text_chars: set[str] | None = None) -> str:
    """The family name to use for a report whose texts use `text_chars`; builds the subset once."""
    src, index = source_font()
    base = _base_chars()
    extra = {ord(c) for c in text_chars or set()} - base
    if extra:
        from fontTools.ttLib import TTFont

        cmap = set(TTFont(src, fontNumber=index, lazy=True).getBestCmap())
        extra &= cmap
    key = hashlib.sha256(f"{src}:{index}:{os.path.getmtime(src)}:{sorted(extra)}".encode()).hexdigest()[:12]
    if key in _loaded:
        return _loaded[key][0]
    family = _FAMILY if not extra else f"{_FAMILY} {key[:6]}"
    path = _cache_dir() / f"report-sans-{key}.otf"
    if not path.exists():
        _build(path, src, index, base | extra, family)
    font_manager.fontManager.addfont(str(path))
    _loaded[key] = (family, frozenset(base | extra))
    return family
