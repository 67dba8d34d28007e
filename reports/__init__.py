"""Monthly and yearly energy reports per firm and per park, in Excel and PDF (zh / en).

Figures come only from the store's contract views (see _gather.py); a report states the rule-set
and tariff versions it used. `parkpulse report …` is the CLI (reports/cli.py). Importing the package does not import the
renderers (matplotlib, openpyxl): they load on the first render (reports/_render.py).
"""

from __future__ import annotations

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
