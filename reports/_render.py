"""A report to bytes in one format, importing the renderer only when it is first used.

matplotlib (PDF) and openpyxl (Excel) cost some 50 MB of resident memory once imported; a process
that only reads the views and hands reports to render workers (reports/_stream.py) never pays it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from reports._model import Report
from reports.errors import ReportInputError

FORMATS = ("xlsx", "pdf")


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ReportInputError("format", fmt, "must be xlsx or pdf")
    return fmt


def render_pdf(rep: Report, lang: str = "zh") -> bytes:
    """The report as a PDF (reports/_pdf.py)."""
    from reports._pdf import render_pdf as _render_pdf

    return _render_pdf(rep, lang)


def render_xlsx(rep: Report, lang: str = "zh") -> bytes:
    """The report as an Excel workbook (reports/_xlsx.py)."""
    from reports._xlsx import render_xlsx as _render_xlsx

    return _render_xlsx(rep, lang)


def render(rep: Report, fmt: str, lang: str) -> bytes:
    return render_xlsx(rep, lang) if check_format(fmt) == "xlsx" else render_pdf(rep, lang)


def write_atomic(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
