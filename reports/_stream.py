"""A park's reports streamed to files: read in chunks of firms, rendered in worker processes.

The park's figures are read once per section for all its firms (load_park_head); the costs, the
dearest section by far, per chunk of firms, so the first firms render while the next chunk is read.
A worker process gets one report at a time (one firm's figures, or the park's at the end), renders
its formats and writes each file as it is done; the reader keeps only a bounded queue of reports
ahead of the workers, so memory does not grow with the number of firms.

Workers are fresh interpreters (reports/_workers.py; the reading process holds a database connection
and a reader thread, neither of which a forked child should inherit) and import the renderers
themselves; the reading process never imports matplotlib or openpyxl. After each report a worker
gives freed heap back to the system (glibc malloc_trim), which keeps its resident size flat at
about 105 MB instead of creeping up.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg

from reports._build import build_report
from reports._gather import load_costs, load_park_head
from reports._jobs import Output, RenderDone, RenderJob, render_job
from reports._model import Report
from reports._period import Period
from reports._workers import WorkerPool
from reports.errors import ReportInputError

__all__ = [
    "DEFAULT_CHUNK",
    "FIRST_CHUNK",
    "PARALLEL_FROM",
    "Output",
    "RenderDone",
    "RenderJob",
    "auto_workers",
    "iter_park_reports",
    "render_job",
    "run_jobs",
    "usable_cpus",
]

DEFAULT_CHUNK = 50  # firms per cost query: ~3 s of database time each, measured (bench/reports.py)
FIRST_CHUNK = 8  # a small first chunk, so the workers start within a second
PARALLEL_FROM = 20  # firms in the database from which the schedule renders in worker processes


def iter_park_reports(
    conn: psycopg.Connection[Any],
    park_id: str,
    period: Period,
    chunk: int = DEFAULT_CHUNK,
    first_chunk: int = FIRST_CHUNK,
) -> Iterator[Report]:
    """Each firm's report as soon as its chunk's costs are read, then the park's report.

    The figures are those of `load_park` (same views, same queries, the costs restricted to the
    chunk's firms), so a firm's report is the one `build_report(load_park(…), firm)` makes."""
    if chunk < 1 or first_chunk < 1:
        raise ReportInputError("chunk", min(chunk, first_chunk), "must be at least 1 firm")
    data = load_park_head(conn, park_id, period)
    ids = list(data.firms)
    i, size = 0, first_chunk
    while i < len(ids):
        part = ids[i : i + size]
        i, size = i + size, chunk
        load_costs(conn, data, part)
        for fid in part:
            yield build_report(data, fid)
    yield build_report(data)


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_workers(conn: psycopg.Connection[Any]) -> int:
    """Render in-process for a few firms (starting workers costs more), else one worker per CPU."""
    row = conn.execute("SELECT count(*) FROM v_firms").fetchone()
    firms = int(row[0]) if row else 0
    return 1 if firms < PARALLEL_FROM else usable_cpus()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


def _feed(jobs: Iterable[RenderJob], q: queue.Queue[object], stop: threading.Event) -> None:
    """Reader thread: put the jobs into `q` (blocking while it is full), then _END or _Failed."""

    def put(item: object) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                q.put(item, timeout=0.2)
                return True
        return False

    try:
        for job in jobs:
            if not put(job):
                return
    except BaseException as exc:  # handed to the consumer, which raises it
        put(_Failed(exc))
        return
    put(_END)


def run_jobs(jobs: Iterable[RenderJob], workers: int = 1, ahead: int = 64) -> Iterator[RenderDone]:
    """Render the jobs; with workers > 1 in that many worker processes (one job each at a time),
    the jobs iterated in a reader thread (so database reads overlap the rendering) at most `ahead`
    reports in advance. Results come as files are written, not in job order. The first error stops
    everything and is raised here; the reader thread is joined before this returns, so its
    connection is free again."""
    if workers < 1:
        raise ReportInputError("workers", workers, "must be at least 1")
    if workers == 1:
        for job in jobs:
            yield render_job(job)
        return
    q: queue.Queue[object] = queue.Queue(maxsize=max(ahead, 1))
    stop = threading.Event()
    reader = threading.Thread(target=_feed, args=(jobs, q, stop), name="report-reader", daemon=True)
    pool = WorkerPool(workers)
    reader.start()
    try:
        reading = True
        while reading or pool.busy():
            while reading and pool.idle():
                item = q.get()
                if item is _END:
                    reading = False
                elif isinstance(item, _Failed):
                    raise item.exc
                else:
                    assert isinstance(item, RenderJob)
                    pool.submit(item)
            if not reading:
                pool.retire_idle()
            if pool.busy():
                yield from pool.results()
    finally:
        stop.set()
        pool.close()
        reader.join()
