"""Benchmark: the monthly Excel and PDF reports of 1 000 firms, written to files (issue 15).

    python bench/reports.py                 # 1 000 firms, November 2025, 2 worker processes
    python bench/reports.py --firms 100     # smaller, while developing

Setup (timed apart, not in the total): a fresh database, a synthetic park (parkpulse.synthetic:
one boundary meter per firm and nine sub-meters), the boundary meter's kWh counter every hour of
the month, rollups refreshed, the shipped Henan TOU tariff assigned to every other firm.

Measured in the same run:
- the old per-firm read: `load_park(…, firm)` for a sample of firms spread over the park (median,
  and that median × the number of firms: what reading firm by firm would cost);
- the park-wide read: `load_park(…)` once, one query per section for all firms;
- the run (the total, goal < 60 s): `generate_all` as `parkpulse report schedule` does it: the park
  read once per section (costs in chunks of firms), every firm's Excel and PDF (zh) and the park's
  rendered in `--workers` spawned processes and written to files as they finish;
- the run comes first, before the reads below, so this process is as small as the CLI's;
- peak memory of the benchmark process plus its workers, sampled every 0.1 s during the run:
  the sum of RSS (goal < 300 MB; shared library pages count once per process) and of PSS;
- after the run, the render time of one firm in this process alone (no contention), for the floor:
  (park-wide read + firms × render) / CPUs is what 2 cores cannot beat without a cheaper view or
  renderer.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil
import psycopg

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from reports import Period, build_report, generate_all, load_park, render_pdf, render_xlsx  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
PERIOD = Period(2025, 11)
GOAL_S, GOAL_MB = 60.0, 300.0


def prepare(admin: str, firms: int) -> tuple[str, str]:
    # imported here, not at the top: the spawned render workers import this module again (as
    # multiprocessing does with __main__) and should not carry the set-up's modules
    from costs import DEFAULT_TARIFFS_FILE, Assignment, assign_tariff, load_tariffs, sync_tariffs
    from parkpulse.db import migrate, refresh_rollups, server_dsn
    from parkpulse.registry import import_registry
    from parkpulse.synthetic import synthetic_park, write_readings

    name = f"pp_bench_reports_{int(time.time())}"
    dsn = server_dsn(admin, name)
    migrate(dsn, prefer="plain")
    park = "bench"
    with psycopg.connect(dsn) as conn:
        import_registry(conn, synthetic_park(park, firms=firms, meters_per_gateway=10))
        mid = conn.execute("SELECT metric_id FROM metrics WHERE name = 'elec_import_kwh'").fetchone()
        assert mid is not None
        pks = [
            r[0]
            for r in conn.execute(
                "SELECT device_pk FROM v_devices WHERE device_id = 'm000' ORDER BY device_pk"
            )
        ]
        start = datetime(2025, 11, 1, tzinfo=TZ)
        rows = []
        for i, pk in enumerate(pks):
            for h in range(30 * 24 + 1):
                rows.append((pk, mid[0], start + timedelta(hours=h), 1000.0 + h * (5 + i % 17), 0))
        write_readings(conn, rows)
        while refresh_rollups(conn) > 0:
            pass
        sync_tariffs(conn, load_tariffs(DEFAULT_TARIFFS_FILE))
        for f in range(0, firms, 2):
            assign_tariff(
                conn,
                Assignment(
                    f"{park}-f{f:04d}", "henan-industrial-tou", date(2025, 1, 1), voltage_class="kv1_10"
                ),
            )
        conn.commit()
    return dsn, park


class MemoryPeak:
    """Samples this process and its children (recursive) until stopped: peak sums of RSS and PSS."""

    def __init__(self, every_s: float = 0.1) -> None:
        self.rss_mb = 0.0
        self.pss_mb = 0.0
        self.at_peak: list[float] = []  # RSS of each process (MB) when the RSS sum peaked
        self._every = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-peak", daemon=True)

    def sample(self, full: bool) -> None:
        me = psutil.Process()
        rss = pss = 0
        each = []
        for p in [me, *me.children(recursive=True)]:
            try:
                if full:
                    fi = p.memory_full_info()
                    rss, pss = rss + fi.rss, pss + fi.pss
                    each.append(fi.rss / 2**20)
                else:
                    each.append(p.memory_info().rss / 2**20)
                    rss += p.memory_info().rss
            except psutil.Error:  # a worker that just ended
                continue
        if rss / 2**20 > self.rss_mb:
            self.at_peak = each
        self.rss_mb = max(self.rss_mb, rss / 2**20)
        self.pss_mb = max(self.pss_mb, pss / 2**20)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self._every):
            self.sample(full=n % 5 == 0)  # PSS reads smaps: every 0.5 s only
            n += 1

    def __enter__(self) -> MemoryPeak:
        self.sample(full=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _per_firm_reads(dsn: str, park: str, firms: list[str], sample: int) -> list[float]:
    step = max(len(firms) // sample, 1)
    out = []
    with psycopg.connect(dsn) as conn:
        for fid in firms[::step][:sample]:
            t0 = time.perf_counter()
            load_park(conn, park, PERIOD, fid)
            out.append(time.perf_counter() - t0)
    return out


def _render_alone(dsn: str, park: str, firms: list[str], sample: int) -> list[float]:
    with psycopg.connect(dsn) as conn:
        data = load_park(conn, park, PERIOD)
    reps = [build_report(data, f) for f in firms[:: max(len(firms) // sample, 1)][:sample]]
    render_pdf(reps[0], "zh")  # the first render loads matplotlib and the font
    out = []
    for rep in reps:
        t0 = time.perf_counter()
        render_xlsx(rep, "zh")
        render_pdf(rep, "zh")
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--firms", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=50, help="firms per cost query in the run")
    ap.add_argument("--sample", type=int, default=20, help="firms in the per-firm read and render samples")
    ap.add_argument("--admin-url", default="postgresql://127.0.0.1:5432/postgres")
    a = ap.parse_args()
    cpus = len(os.sched_getaffinity(0))
    print(f"{cpus} CPUs, load average {os.getloadavg()[0]:.1f} before the run", flush=True)
    print(f"preparing {a.firms} firms …", flush=True)
    t = time.perf_counter()
    dsn, park = prepare(a.admin_url, a.firms)
    setup_s = time.perf_counter() - t
    try:
        # the run first, so this process enters it as `parkpulse report schedule` would: without
        # the heap of a whole park read beforehand (the reads are measured after it)
        with tempfile.TemporaryDirectory(prefix="pp-bench-reports-") as out, MemoryPeak() as mem:
            t = time.perf_counter()
            with psycopg.connect(dsn) as conn:
                res = generate_all(
                    conn, Path(out), PERIOD, ("xlsx", "pdf"), ("zh",), workers=a.workers, chunk=a.chunk
                )
            run_s = time.perf_counter() - t
            load_run = os.getloadavg()[0]
            files = len(res.written)
            size_mb = sum(p.stat().st_size for p in res.written) / 2**20
        with psycopg.connect(dsn) as conn:
            t = time.perf_counter()
            data = load_park(conn, park, PERIOD)
            read_s = time.perf_counter() - t
        firms = list(data.firms)
        del data
        per_firm = _per_firm_reads(dsn, park, firms, a.sample)
        per_firm_total = statistics.median(per_firm) * len(firms)
        alone = _render_alone(dsn, park, firms, a.sample)
    finally:
        with psycopg.connect(a.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dsn.split("dbname=")[1].split()[0]}" WITH (FORCE)')
    worker_ms = statistics.median(res.render_seconds) * 1000
    alone_ms = statistics.median(alone) * 1000
    floor_s = (read_s + len(firms) * alone_ms / 1000) / cpus
    print(f"setup (not in the total): {setup_s:.1f} s")
    print(
        f"read: per firm median {statistics.median(per_firm) * 1000:.0f} ms × {len(firms)} = {per_firm_total:.1f} s "
        f"(old per-firm read, {len(per_firm)} sampled); park-wide {read_s:.2f} s; "
        f"ratio {per_firm_total / read_s:.2f}"
    )
    print(
        f"run: {len(firms)} firms + the park, xlsx + pdf, {files} files ({size_mb:.1f} MB) in "
        f"{a.workers} workers, costs read in chunks of {a.chunk}: {run_s:.2f} s (goal < {GOAL_S:.0f} s); "
        f"load average (1 min) at its end {load_run:.1f}"
    )
    print(
        f"render per firm (xlsx + pdf): median {worker_ms:.0f} ms in a worker during the run, "
        f"{alone_ms:.0f} ms alone in one process; ratio {worker_ms / alone_ms:.2f}"
    )
    print(
        f"peak memory of all processes: RSS {mem.rss_mb:.0f} MB (goal < {GOAL_MB:.0f} MB), PSS {mem.pss_mb:.0f} MB; "
        f"RSS per process at the peak (this one first): {', '.join(f'{x:.0f}' for x in mem.at_peak)} MB"
    )
    print(
        f"floor on {cpus} CPUs: (read {read_s:.1f} s + {len(firms)} × {alone_ms:.0f} ms render) / {cpus} "
        f"= {floor_s:.1f} s"
    )
    print(
        json.dumps(
            {
                "firms": len(firms),
                "workers": a.workers,
                "setup_s": round(setup_s, 1),
                "seconds": round(run_s, 2),
                "load_avg_1m_after_run": round(load_run, 1),
                "read_s": round(read_s, 2),
                "per_firm_read_ms_median": round(statistics.median(per_firm) * 1000, 1),
                "per_firm_read_s_total": round(per_firm_total, 1),
                "read_ratio": round(per_firm_total / read_s, 2),
                "render_ms_median_worker": round(worker_ms, 1),
                "render_ms_median_alone": round(alone_ms, 1),
                "peak_rss_mb": round(mem.rss_mb),
                "peak_pss_mb": round(mem.pss_mb),
                "floor_s": round(floor_s, 1),
                "files": files,
                "goal_met": run_s < GOAL_S and mem.rss_mb < GOAL_MB,
            }
        )
    )


if __name__ == "__main__":
    main()
