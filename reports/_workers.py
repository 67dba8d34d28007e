"""Render worker processes: plain child interpreters fed one job at a time over their pipes.

Not multiprocessing: its spawned children import the parent's `__main__` again, and its queues'
semaphores start a resource-tracker process (~13 MB) that a render pool does not need. A worker here
is `python -c "…serve()"`: it imports the renderers, then reads a job from stdin and writes the
result to stdout, each as a 4-byte length and a pickle, until stdin closes. The parent keeps one
jobs per worker in flight (the next one waits in the pipe, so a worker never waits for the parent)
and waits on the workers' stdout with a selector (unbuffered, so no answer hides in a buffer); once the jobs have run
out, a worker with nothing left to do is let go at once, so the park's report (the last and
largest job) renders while the other workers' memory is already back.

A worker does not run `reports/__init__.py`: that imports the reading side (psycopg, the views'
queries; some 21 MB resident) which a renderer never uses. It registers `reports` as a bare package
(its folder only) and imports the render modules from it (reports/_jobs.py and what it imports;
none of them imports from the package itself). The tests run real workers, so a render module that
started to need the package's `__init__` would fail them.

A worker's own failure comes back as its exception (or, when that does not pickle, a ReportError
naming the worker and the subject), with the traceback on the worker's stderr; a worker that dies
is a ReportError naming its exit code. Closing lets each worker finish its job (files are written
atomically) and waits for it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import selectors
import struct
import subprocess
import sys
import traceback
from pathlib import Path
from typing import IO, Any

from reports.errors import ReportError

_LEN = struct.Struct("!I")
_BOOT = "from reports._workers import serve; serve()"  # reports/__init__ loads nothing eagerly
_PACKAGE = Path(__file__).resolve().parent  # the reports folder
DEPTH = 2  # jobs in flight per worker
STOP_WAIT_S = 120.0  # a worker finishing its last job on close (the park's report is the longest)


def send(out: IO[bytes], obj: object) -> None:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_LEN.pack(len(body)) + body)
    while view:  # an unbuffered pipe may take part of it
        view = view[out.write(view) or 0 :]
    out.flush()


def _read(inp: IO[bytes], n: int) -> bytes:
    parts, left = [], n
    while left:
        chunk = inp.read(left)
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def receive(inp: IO[bytes]) -> Any:
    """The next object from `inp`, or None at its end (a frame cut short counts as the end)."""
    head = _read(inp, _LEN.size)
    if len(head) < _LEN.size:
        return None
    (n,) = _LEN.unpack(head)
    body = _read(inp, n)
    return None if len(body) < n else pickle.loads(body)


def _portable(exc: BaseException, subject: str) -> BaseException:
    """`exc` if it survives pickling, else a ReportError saying what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # any failure to round-trip: send a plain error
        return ReportError(f"rendering {subject} failed in worker {os.getpid()}: {type(exc).__name__}: {exc}")
    return exc


def serve() -> None:
    """A worker's loop. Its stdout carries only frames: stray prints go to stderr."""
    from reports._jobs import RenderJob, render_job, worker_init

    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    worker_init()
    while (job := receive(inp)) is not None:
        assert isinstance(job, RenderJob)
        try:
            send(out, ("ok", render_job(job)))
        except Exception as exc:  # handed to the parent, which raises it
            traceback.print_exc()
            send(out, ("error", _portable(exc, job.report.subject_id)))
    out.close()


class _Worker:
    def __init__(self) -> None:
        env = dict(os.environ)
        root = str(_PACKAGE.parent)  # where `reports` and `parkpulse` are importable from
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT],
            bufsize=0,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout
        self.jobs = 0  # in flight
        self.retired = False

    def died(self) -> ReportError:
        code = self.proc.wait()
        return ReportError(f"render worker {self.proc.pid} exited with code {code}")


class WorkerPool:
    """`n` render workers; `submit` to an idle one, `results` as they come."""

    def __init__(self, n: int) -> None:
        self._sel = selectors.DefaultSelector()
        self._workers: list[_Worker] = []
        try:
            for _ in range(n):
                w = _Worker()
                self._workers.append(w)
                self._sel.register(w.stdout, selectors.EVENT_READ, w)
        except BaseException:
            self.close()
            raise

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers]

    def idle(self) -> bool:
        """Some worker can take another job."""
        return any(w.jobs < DEPTH and not w.retired for w in self._workers)

    def busy(self) -> bool:
        return any(w.jobs for w in self._workers)

    def retire_idle(self) -> None:
        """Let the workers with no job go (no more jobs will come): they exit and free their memory."""
        for w in self._workers:
            if not w.jobs and not w.retired:
                w.retired = True
                self._sel.unregister(w.stdout)
                with contextlib.suppress(OSError):
                    w.stdin.close()

    def submit(self, job: object) -> None:
        w = min((w for w in self._workers if not w.retired), key=lambda w: w.jobs)
        try:
            send(w.stdin, job)
        except OSError:  # the worker is gone (a broken pipe)
            raise w.died() from None
        w.jobs += 1

    def results(self) -> list[Any]:
        """Blocks until at least one busy worker answers; its results (raises its error)."""
        out = []
        for key, _ in self._sel.select():
            w: _Worker = key.data
            msg = receive(w.stdout)
            if msg is None:
                raise w.died()
            w.jobs -= 1
            kind, value = msg
            if kind == "error":
                raise value
            out.append(value)
        return out

    def close(self) -> None:
        """Stdin closed: each worker ends after its job; one that does not in STOP_WAIT_S is killed."""
        for w in self._workers:
            with contextlib.suppress(OSError):  # a worker already gone
                w.stdin.close()
        for w in self._workers:
            try:
                w.proc.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
            w.stdout.close()
        self._sel.close()
