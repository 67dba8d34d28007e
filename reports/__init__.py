"""Monthly and yearly energy reports per firm and per park, in Excel and PDF (zh / en).

Figures come only from the store's contract views (see _gather.py); a report states the rule-set
and tariff versions it used. `parkpulse report …` is the CLI (reports/cli.py). Importing the package does not import the
renderers (matplotlib, openpyxl): they load on the first render (reports/_render.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reports._build import build_report
    from reports._gather import ParkData, find_park, load_costs, load_park, load_park_head
    from reports._model import Report
    from reports._period import Period, parse_period
    from reports._render import render_pdf, render_xlsx
    from reports._schedule import (
        FORMATS,
        ScheduleResult,
        firm_report,
        generate_all,
        last_month,
        park_report,
        render,
        report_path,
        write_atomic,
    )
    from reports._stream import RenderDone, RenderJob, iter_park_reports, render_job, run_jobs
    from reports._texts import LANGS, check_lang
    from reports.errors import ReportError, ReportInputError

# Names load on first use (PEP 562): a render worker imports `reports._workers` without pulling the
# database side (psycopg) or every renderer into its memory.
_WHERE: dict[str, str] = {
    "FORMATS": "reports._schedule",
    "LANGS": "reports._texts",
    "ParkData": "reports._gather",
    "Period": "reports._period",
    "RenderDone": "reports._stream",
    "RenderJob": "reports._stream",
    "Report": "reports._model",
    "ReportError": "reports.errors",
    "ReportInputError": "reports.errors",
    "ScheduleResult": "reports._schedule",
    "build_report": "reports._build",
    "check_lang": "reports._texts",
    "find_park": "reports._gather",
    "firm_report": "reports._schedule",
    "generate_all": "reports._schedule",
    "iter_park_reports": "reports._stream",
    "last_month": "reports._schedule",
    "load_costs": "reports._gather",
    "load_park": "reports._gather",
    "load_park_head": "reports._gather",
    "park_report": "reports._schedule",
    "parse_period": "reports._period",
    "render": "reports._schedule",
    "render_job": "reports._stream",
    "render_pdf": "reports._render",
    "render_xlsx": "reports._render",
    "report_path": "reports._schedule",
    "run_jobs": "reports._stream",
    "write_atomic": "reports._schedule",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'reports' has no attribute {name!r}")


__all__ = [
    "FORMATS",
    "LANGS",
    "ParkData",
    "Period",
    "RenderDone",
    "RenderJob",
    "Report",
    "ReportError",
    "ReportInputError",
    "ScheduleResult",
    "build_report",
    "check_lang",
    "find_park",
    "firm_report",
    "generate_all",
    "iter_park_reports",
    "last_month",
    "load_costs",
    "load_park",
    "load_park_head",
    "park_report",
    "parse_period",
    "render",
    "render_job",
    "render_pdf",
    "render_xlsx",
    "report_path",
    "run_jobs",
    "write_atomic",
]
