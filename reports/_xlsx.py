"""The report as an Excel workbook: one sheet per section, real numbers, units in the headers,
formulas for totals and shares, the header row frozen."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from reports._model import Report
from reports._texts import check_lang, note_text, t

Cell = str | float | int | bool | date | datetime | None
_BOLD = Font(bold=True)


def _local(v: datetime | None, tz: ZoneInfo) -> datetime | None:
    """Excel has no time zones: instants are written as the park's local time."""
    return None if v is None else v.astimezone(tz).replace(tzinfo=None)


def _sheet(wb: Workbook, title: str, headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> Worksheet:
    ws = wb.create_sheet(title[:31])
    ws.append(list(headers))
    for c in ws[1]:
        c.font = _BOLD
    for row in rows:
        ws.append(list(row))
    ws.freeze_panes = "A2"
    for i, h in enumerate(headers, start=1):
        ws.column_dimensions[get_column_letter(i)].width = max(10, min(40, len(h) * 2 + 2))
    return ws


def _total_row(ws: Worksheet, label: str, cols: dict[int, str]) -> int:
    """A bold total row under the data: `cols` maps a column number to its formula template,
    `{c}` the column letter, `{a}`/`{b}` the first and last data row."""
    a, b = 2, ws.max_row
    r = b + 1
    ws.cell(r, 1, label).font = _BOLD
    for col, tmpl in cols.items():
        c = ws.cell(r, col, tmpl.format(c=get_column_letter(col), a=a, b=max(a, b)))
        c.font = _BOLD
    return int(r)


def _name(zh: str, en: str | None, lang: str) -> str:
    return (en or zh) if lang == "en" else zh


def _summary(wb: Workbook, rep: Report, lang: str) -> None:
    ws = wb.active
    assert ws is not None
    ws.title = t("summary", lang)
    tz = ZoneInfo(rep.park.timezone)
    rows: list[tuple[str, Cell]] = [
        (t("park", lang), f"{_name(rep.park.name, rep.park.name_en, lang)} ({rep.park.park_id})")
    ]
    if rep.firm is not None:
        rows.append((t("firm", lang), f"{_name(rep.firm.name, rep.firm.name_en, lang)} ({rep.firm.firm_id})"))
    rows += [
        (t("period", lang), rep.period.key),
        (t("generated", lang), _local(rep.generated_at, tz)),
        (t("rule_set", lang), "; ".join(rep.rule_sets) or t("none", lang)),
        (t("tariff", lang), "; ".join(rep.tariffs) or t("none", lang)),
        (t("tce", lang), rep.total_tce()),
        (t("cost_yuan", lang), rep.total_cost()),
    ]
    if rep.no_tariff:
        rows.append((t("tariff", lang), t("no_tariff", lang, firms=", ".join(rep.no_tariff))))
    rows += [("", note_text(n, lang)) for n in rep.notes]
    ws.append([t("summary", lang), ""])
    ws["A1"].font = _BOLD
    for r in rows:
        ws.append(list(r))
    ws.freeze_panes = "A2"
    ws.column_dimensions["A"].width = 24
    ws.column_dimensions["B"].width = 60


def _energy(wb: Workbook, rep: Report, lang: str) -> None:
    hdr = [t(k, lang) for k in ("carrier", "direction", "unit", "quantity", "coef", "tce")]
    hdr += [t("total", lang) + " ±1/0", t("share", lang), t("suspect", lang)]
    rows: list[list[Cell]] = []
    for i, e in enumerate(rep.energy, start=2):
        sign = 0 if not e.in_total else (-1 if e.direction == "export" else 1)
        tce: Cell = f"=D{i}*E{i}/1000" if e.kgce_per_unit is not None else e.tce
        rows.append(
            [
                t(e.carrier, lang),
                t(e.direction, lang),
                e.unit,
                e.quantity,
                e.kgce_per_unit,
                tce,
                sign,
                None,
                e.suspect,
            ]
        )
    ws = _sheet(wb, t("energy", lang), hdr, rows)
    total = _total_row(ws, t("total", lang), {6: "=SUMPRODUCT({c}{a}:{c}{b},G{a}:G{b})"})
    for i in range(2, total):
        ws.cell(i, 8, f"=IF($F${total}=0,0,F{i}*G{i}/$F${total})").number_format = "0.0%"


def _daily(wb: Workbook, rep: Report, lang: str) -> None:
    keys = sorted({(d.carrier, d.direction, d.unit) for d in rep.daily})
    days = sorted({d.day for d in rep.daily})
    val = {(d.day, d.carrier, d.direction, d.unit): d.quantity for d in rep.daily}
    hdr = [t("day", lang)] + [f"{t(c, lang)} {t(dr, lang)} ({u})" for c, dr, u in keys]
    rows: list[list[Cell]] = [[day, *(val.get((day, *k)) for k in keys)] for day in days]
    ws = _sheet(wb, t("daily", lang), hdr, rows)
    for r in range(2, ws.max_row + 1):
        ws.cell(r, 1).number_format = "yyyy-mm-dd"
    if keys:
        _total_row(ws, t("total", lang), {i: "=SUM({c}{a}:{c}{b})" for i in range(2, len(keys) + 2)})


def _kpi(wb: Workbook, rep: Report, lang: str) -> None:
    keys = (
        "firm_id",
        "firm",
        "year_col",
        "energy_tce",
        "intensity",
        "intensity_change",
        "mu_tax",
        "mu_av",
        "score",
        "class",
        "rule_set",
    )
    rows: list[list[Cell]] = [
        [
            k.firm_id,
            k.firm_name,
            k.year,
            k.energy_tce,
            k.intensity,
            k.intensity_change_pct,
            k.mu_tax,
            k.mu_added_value,
            k.score,
            k.mu_class,
            f"{k.rule_set} {k.rule_version}",
        ]
        for k in rep.kpis
    ]
    _sheet(wb, t("kpi", lang), [t(k, lang) for k in keys], rows)


def _cost(wb: Workbook, rep: Report, lang: str) -> None:
    keys = (
        "cost_month",
        "carrier",
        "tou_period",
        "quantity",
        "unit",
        "price",
        "price_unit",
        "cost_yuan",
        "share",
        "tariff",
        "verified",
        "mismatch",
    )
    rows: list[list[Cell]] = []
    for i, c in enumerate(rep.costs, start=2):
        cost: Cell = f"=D{i}*F{i}" if c.quantity is not None and c.price is not None else c.cost_yuan
        rows.append(
            [
                c.month,
                t(c.carrier, lang),
                t(c.period, lang),
                c.quantity,
                c.unit,
                c.price,
                c.price_unit,
                cost,
                None,
                c.tariff,
                c.verified,
                c.register_mismatch,
            ]
        )
    ws = _sheet(wb, t("cost", lang), [t(k, lang) for k in keys], rows)
    for r in range(2, ws.max_row + 1):
        ws.cell(r, 1).number_format = "yyyy-mm"
    total = _total_row(ws, t("total", lang), {8: "=SUM({c}{a}:{c}{b})"})
    for i in range(2, total):
        ws.cell(i, 9, f'=IF(OR(H{i}="",$H${total}=0),"",H{i}/$H${total})').number_format = "0.0%"
    if rep.no_tariff:
        ws.cell(total + 2, 1, t("no_tariff", lang, firms=", ".join(rep.no_tariff))).font = _BOLD


def _alerts(wb: Workbook, rep: Report, lang: str) -> None:
    tz = ZoneInfo(rep.park.timezone)
    keys = (
        "alert_id",
        "firm_id",
        "severity",
        "device",
        "metric",
        "state",
        "opened",
        "resolved",
        "value",
        "limit",
        "unit",
        "valid_hours",
        "exceeded_hours",
    )
    rows: list[list[Cell]] = [
        [
            a.alert_id,
            a.firm_id,
            a.severity,
            a.device_id,
            a.metric,
            t("closed" if a.resolved_at else "open", lang),
            _local(a.opened_at, tz),
            _local(a.resolved_at, tz),
            a.value,
            a.limit_value,
            a.unit,
            a.valid_hours,
            a.exceeded_hours,
        ]
        for a in rep.alerts
    ]
    ws = _sheet(wb, t("alerts", lang), [t(k, lang) for k in keys], rows)
    if rows:
        _total_row(ws, t("total", lang), {12: "=SUM({c}{a}:{c}{b})", 13: "=SUM({c}{a}:{c}{b})"})


def _completeness(wb: Workbook, rep: Report, lang: str) -> None:
    keys = ("firm_id", "gateway", "device", "kind", "poll", "expected", "received", "share")
    rows: list[list[Cell]] = [
        [c.firm_id, c.gateway_id, c.device_id, c.kind, c.poll_interval_s, c.expected, c.received, None]
        for c in rep.completeness
    ]
    ws = _sheet(wb, t("completeness", lang), [t(k, lang) for k in keys], rows)
    total = _total_row(ws, t("total", lang), {6: "=SUM({c}{a}:{c}{b})", 7: "=SUM({c}{a}:{c}{b})"})
    for i in range(2, total + 1):
        ws.cell(i, 8, f"=IF(F{i}=0,1,MIN(1,G{i}/F{i}))").number_format = "0.0%"
    ws.cell(total + 2, 1, t("completeness_def", lang))


def _gaps(wb: Workbook, rep: Report, lang: str) -> None:
    tz = ZoneInfo(rep.park.timezone)
    keys = ("kind", "firm_id", "gateway", "device", "metric", "start", "end", "count", "reason")
    rows: list[list[Cell]] = [
        [
            g.kind,
            g.firm_id,
            g.gateway_id,
            g.device_id,
            g.metric,
            _local(g.start, tz),
            _local(g.end, tz),
            g.count,
            g.reason,
        ]
        for g in rep.gaps
    ]
    _sheet(wb, t("gaps", lang), [t(k, lang) for k in keys], rows)


def _scorecard(wb: Workbook, rep: Report, lang: str) -> None:
    keys = ("indicator", "value", "target", "unit", "met")
    rows: list[list[Cell]] = [[s.indicator, s.value, s.target, s.unit, s.met] for s in rep.scorecard]
    _sheet(wb, t("scorecard", lang), [t(k, lang) for k in keys], rows)


def render_xlsx(rep: Report, lang: str = "zh") -> bytes:
    """The workbook's bytes."""
    check_lang(lang)
    wb = Workbook()
    _summary(wb, rep, lang)
    _energy(wb, rep, lang)
    _daily(wb, rep, lang)
    _kpi(wb, rep, lang)
    _cost(wb, rep, lang)
    _alerts(wb, rep, lang)
    _completeness(wb, rep, lang)
    _gaps(wb, rep, lang)
    if rep.scope == "park":
        _scorecard(wb, rep, lang)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
