"""A render job (one report, the files to make from it) and its doing, in whatever process renders.

Kept apart from reports/_stream.py (the reading side, psycopg and the views) so that a render worker
(reports/_workers.py) imports only this, the renderers and the report model.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reports._model import Report
from reports._render import render, write_atomic

Output = tuple[str, str, Path]  # format, language, file


@dataclass(frozen=True)
class RenderJob:
    """One report and the files to write from it."""

    report: Report
    outputs: tuple[Output, ...]


@dataclass(frozen=True)
class RenderDone:
    subject: str
    paths: tuple[Path, ...]
    seconds: float  # render and write, in the process that did it
    pid: int


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return fn


def render_job(job: RenderJob) -> RenderDone:
    """Render and write the job's files (atomically); in a worker or in the calling process."""
    t0 = time.perf_counter()
    for fmt, lang, path in job.outputs:
        write_atomic(path, render(job.report, fmt, lang))
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    return RenderDone(
        job.report.subject_id, tuple(p for _, _, p in job.outputs), time.perf_counter() - t0, os.getpid()
    )


def worker_init() -> None:
    """Import the renderers and load the report font once per worker, not in its first job."""
    from reports._fonts import report_font
    from reports._pdf import render_pdf  # noqa: F401  (imported for its cost, before the first job)

    report_font()
