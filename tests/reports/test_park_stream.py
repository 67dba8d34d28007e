"""The park-wide read (one query per section for all firms, costs in chunks) against the per-firm
read, and the streamed schedule in real worker processes, against a real database."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from openpyxl import load_workbook
from reports_seed import TZ, fire_emission_alert, seed
from typer.testing import CliRunner

from reports import (
    Period,
    RenderJob,
    Report,
    ReportInputError,
    build_report,
    firm_report,
    generate_all,
    iter_park_reports,
    load_park,
    park_report,
    run_jobs,
)
from reports.cli import app

NOV = Period(2025, 11)
FIRMS = 5
EPOCH = datetime(2000, 1, 1, tzinfo=TZ)


@pytest.fixture
def park5(db: str, unique_id: str) -> tuple[str, str]:
    """Five firms: the first three with the Henan TOU tariff, firm 0 with gas and two NOx alerts."""
    seed(db, unique_id, firms=FIRMS, tariff_for=3)
    with psycopg.connect(db) as conn:
        fire_emission_alert(
            conn, unique_id, datetime(2025, 11, 5, 8, tzinfo=TZ), datetime(2025, 11, 5, 14, tzinfo=TZ)
        )
        fire_emission_alert(conn, unique_id, datetime(2025, 11, 29, 20, tzinfo=TZ), None)
        conn.commit()
    return db, unique_id


def _same_time(rep: Report) -> Report:
    """The report with its generation time (now() of its read) set aside."""
    return dataclasses.replace(rep, generated_at=EPOCH)


def test_park_wide_and_chunked_reads_give_each_firm_its_per_firm_figures(park5: tuple[str, str]) -> None:
    dsn, park = park5
    ids = [f"{park}-f{i}" for i in range(FIRMS)]
    with psycopg.connect(dsn) as conn:
        wide = load_park(conn, park, NOV)
        per_firm = {fid: _same_time(firm_report(conn, fid, NOV)) for fid in ids}
        # first chunk of 1 firm, then chunks of 2: three cost queries for five firms
        streamed = [_same_time(r) for r in iter_park_reports(conn, park, NOV, chunk=2, first_chunk=1)]
        whole = _same_time(park_report(conn, park, NOV))
    # the figures are not trivially equal: costs for tariffed firms, alerts and gas for firm 0
    assert per_firm[ids[0]].alerts and per_firm[ids[0]].costs and per_firm[ids[2]].costs
    assert {e.carrier for e in per_firm[ids[0]].energy} == {"electricity", "natural_gas"}
    assert per_firm[ids[4]].no_tariff == [ids[4]]
    for fid in ids:
        assert _same_time(build_report(wide, fid)) == per_firm[fid], fid
    assert [r.subject_id for r in streamed] == [*ids, park]
    for rep in streamed[:-1]:
        assert rep == per_firm[rep.subject_id], rep.subject_id
    assert streamed[-1] == whole
    assert whole.total_cost() == pytest.approx(
        sum(c for r in per_firm.values() if (c := r.total_cost()) is not None)
    )


def _sheet_values(path: Path, sheet: str) -> list[tuple[object, ...]]:
    wb = load_workbook(io.BytesIO(path.read_bytes()))
    return [tuple(c.value for c in row) for row in wb[sheet].iter_rows()]


def test_schedule_in_worker_processes_writes_what_one_process_writes(
    park5: tuple[str, str], tmp_path: Path
) -> None:
    dsn, park = park5
    with psycopg.connect(dsn) as conn:
        serial = generate_all(conn, tmp_path / "one", NOV, workers=1)
        parallel = generate_all(conn, tmp_path / "two", NOV, workers=2, chunk=2)
        again = generate_all(conn, tmp_path / "two", NOV, workers=2, chunk=2)

    def rel(paths: list[Path], root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in paths}

    expected = {
        f"2025-11/{park}/{s}.zh.{fmt}"
        for s in [park, *[f"{park}-f{i}" for i in range(FIRMS)]]
        for fmt in ("xlsx", "pdf")
    }
    assert rel(serial.written, tmp_path / "one") == expected
    assert rel(parallel.written, tmp_path / "two") == expected and len(parallel.written) == len(expected)
    assert (again.written, rel(again.kept, tmp_path / "two")) == ([], expected)
    for name in (f"{park}-f0", park):
        one = tmp_path / "one" / "2025-11" / park / f"{name}.zh.xlsx"
        two = tmp_path / "two" / "2025-11" / park / f"{name}.zh.xlsx"
        for sheet in ("能源消费", "能源费用"):
            assert _sheet_values(one, sheet) == _sheet_values(two, sheet), (name, sheet)
        assert (tmp_path / "two" / "2025-11" / park / f"{name}.zh.pdf").read_bytes().startswith(b"%PDF")
    assert not list((tmp_path / "two").rglob(".part-*"))  # no half-written file left behind


def test_jobs_render_in_other_processes_and_a_read_error_stops_them(
    park5: tuple[str, str], tmp_path: Path
) -> None:
    dsn, park = park5
    with psycopg.connect(dsn) as conn:
        reps = list(iter_park_reports(conn, park, NOV))

    def jobs(fail_after: int | None) -> Iterator[RenderJob]:
        for i, rep in enumerate(reps):
            if fail_after is not None and i == fail_after:
                raise ReportInputError("firm", "broken", "stand-in for a failed read")
            yield RenderJob(rep, (("xlsx", "en", tmp_path / f"{rep.subject_id}.xlsx"),))

    done = list(run_jobs(jobs(None), workers=2, ahead=2))
    assert sorted(d.subject for d in done) == sorted(r.subject_id for r in reps)
    assert os.getpid() not in {d.pid for d in done}
    assert all(d.paths[0].stat().st_size > 0 and d.seconds > 0 for d in done)
    with pytest.raises(ReportInputError, match=r"^firm: .*'broken'"):
        list(run_jobs(jobs(2), workers=2, ahead=1))


def test_bad_workers_and_chunks_are_refused_by_name(park5: tuple[str, str], tmp_path: Path) -> None:
    dsn, park = park5
    with pytest.raises(ReportInputError, match=r"^workers: .*\(got 0\)"):
        list(run_jobs([], workers=0))
    with psycopg.connect(dsn) as conn, pytest.raises(ReportInputError, match=r"^chunk: .*\(got 0\)"):
        list(iter_park_reports(conn, park, NOV, chunk=0))
    r = CliRunner().invoke(
        app,
        ["schedule", "--dir", str(tmp_path), "--month", "2025-11", "--workers", "0"],
        env={"PARKPULSE_DATABASE_URL": dsn},
    )
    assert r.exit_code == 2 and "workers: must be at least 1 (got 0)" in r.output
    assert not list(tmp_path.rglob("*.*"))


def test_importing_reports_leaves_the_renderers_unloaded() -> None:
    """The reading process stays small: matplotlib and openpyxl load only in what renders."""
    code = "import sys, reports; print(sorted(m for m in ('matplotlib', 'openpyxl', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
