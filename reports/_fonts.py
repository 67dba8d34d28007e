"""A CJK font matplotlib can embed in a PDF quickly.

Debian's fonts-noto-cjk ships Noto Sans CJK as a CFF-based .ttc of some 65,000 glyphs; matplotlib
embeds it (Type 42, subset by fontTools) but subsetting that file takes about a second per PDF.
So once per machine a subset is cut from it: ASCII, CJK punctuation, full-width forms and the
6,763 hanzi of GB 2312, without layout tables, under its own family name, cached on disk. A
report with a character outside it (a rare name) gets a second subset that adds its characters.

matplotlib still cuts a subset of that file for every PDF (the glyphs the document uses). Cutting a
CFF font means running every kept glyph's charstrings and compiling a new CFF table; so the cached
file holds TrueType (quadratic) outlines instead, converted once from the CFF curves within one
font unit (of 1,000 per em, 0.007 pt at the reports' 7 pt), with only the Windows BMP cmap and glyph
names in `post` (without them fontTools derives every name from the cmap on each load). That is
also what a PDF's CIDFontType2 / FontFile2 is specified to carry: TrueType outlines, not CFF.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path

from fontTools.ttLib import TTFont
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
_FORMAT = "glyf-1"  # part of the cache key: bump when the cached file's make-up changes
MAX_ERR_UNITS = 1.0  # cubic to quadratic tolerance, font units
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


def _build(path: Path, src: str, index: int, cps: frozenset[int], family: str, truetype: bool = True) -> None:
    """Cut `cps` from the source font into `path`; `truetype` False keeps the CFF outlines."""
    from fontTools import subset

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
    if truetype:
        _to_truetype(font)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    os.close(fd)
    font.save(tmp)
    os.replace(tmp, path)


def _to_truetype(font: TTFont) -> None:
    """Replace a CFF-flavoured font's outlines by TrueType ones in place (glyf, loca, maxp 1.0)."""
    from fontTools.pens.cu2quPen import Cu2QuPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.ttLib import newTable

    if "CFF " not in font:
        return
    order = font.getGlyphOrder()
    glyph_set = font.getGlyphSet()
    glyf = newTable("glyf")
    glyf.glyphOrder = order
    glyf.glyphs = {}
    hmtx = font["hmtx"]
    for name in order:
        pen = TTGlyphPen(None)
        # CFF contours run counter-clockwise, TrueType ones clockwise
        glyph_set[name].draw(Cu2QuPen(pen, max_err=MAX_ERR_UNITS, reverse_direction=True))
        glyph = pen.glyph()
        glyph.recalcBounds(glyf)
        glyf.glyphs[name] = glyph
        hmtx[name] = (hmtx[name][0], getattr(glyph, "xMin", 0))
    font["glyf"] = glyf
    font["loca"] = newTable("loca")
    for tag in ("CFF ", "VORG"):
        if tag in font:
            del font[tag]
    font.sfntVersion = "\x00\x01\x00\x00"
    maxp = font["maxp"]
    maxp.tableVersion = 0x00010000
    maxp.maxZones = 1
    for attr in (
        "maxTwilightPoints",
        "maxStorage",
        "maxFunctionDefs",
        "maxInstructionDefs",
        "maxStackElements",
        "maxSizeOfInstructions",
        "maxComponentElements",
    ):
        setattr(maxp, attr, 0)
    font["head"].glyphDataFormat = 0
    font["cmap"].tables = [t for t in font["cmap"].tables if (t.platformID, t.platEncID) == (3, 1)]
    post = font["post"]
    post.formatType = 2.0
    post.extraNames = []
    post.mapping = {}


def report_font(text_chars: set[str] | None = None) -> str:
    """The family name to use for a report whose texts use `text_chars`; builds the subset once."""
    src, index = source_font()
    base = _base_chars()
    extra = {ord(c) for c in text_chars or set()} - base
    if extra:
        cmap = set(TTFont(src, fontNumber=index, lazy=True).getBestCmap())
        extra &= cmap
    key = hashlib.sha256(
        f"{_FORMAT}:{src}:{index}:{os.path.getmtime(src)}:{sorted(extra)}".encode()
    ).hexdigest()[:12]
    if key in _loaded:
        return _loaded[key][0]
    family = _FAMILY if not extra else f"{_FAMILY} {key[:6]}"
    path = _cache_dir() / f"report-sans-{key}.ttf"
    if not path.exists():
        _build(path, src, index, base | extra, family)
    font_manager.fontManager.addfont(str(path))
    _loaded[key] = (family, frozenset(base | extra))
    return family
