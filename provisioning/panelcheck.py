"""Run every dashboard variable and panel query against a database, as Grafana would.

Each query goes through `provisioning.sqlmacros` (variables, then macros) and is executed
read-only; the result is checked against what the panel type needs:

- time series (format ``time_series``): a ``time`` column (timestamp, date or epoch number),
  at least one numeric value column, optionally one text ``metric`` column naming the series,
  rows sorted by time;
- stat: at least one numeric column;
- bar chart: a text (or time) column for the x axis and at least one numeric column;
- table: any columns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from provisioning.dashboards import DEFAULT_OUT, iter_panels
from provisioning.sqlmacros import MacroError, TimeRange, Variable, expand

__all__ = ["PanelResult", "check_dashboards", "load_dashboards", "resolve_variables"]

_NUMERIC = {20, 21, 23, 700, 701, 1700}
_TIME = {1082, 1114, 1184}
_TEXT = {19, 25, 1043, 18}


@dataclass
class PanelResult:
    dashboard: str
    panel: str
    panel_type: str
    sql: str
    columns: list[str] = field(default_factory=list)
    rows: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def load_dashboards(directory: Path = DEFAULT_OUT) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))}


def _run(conn: psycopg.Connection, sql: str) -> tuple[list[tuple[str, int]], list[tuple[Any, ...]]]:
    with conn.cursor() as cur:
        cur.execute(sql)
        cols = [(d.name, d.type_code) for d in (cur.description or [])]
        rows = cur.fetchall()
    return cols, rows


def resolve_variables(
    conn: psycopg.Connection,
    dashboard: Mapping[str, Any],
    time_range: TimeRange,
    chosen: Mapping[str, list[str]] | None = None,
) -> dict[str, Variable]:
    """Run the dashboard's variable queries in order; a choice in `chosen` must be an option (a text
    box takes any value; without a choice, its default)."""
    out: dict[str, Variable] = {}
    for v in dashboard.get("templating", {}).get("list", []):
        name = v["name"]
        if v.get("type") == "textbox":  # free text: the chosen value or the default, not SQL
            text = chosen[name] if chosen and name in chosen else [str(v.get("query", ""))]
            out[name] = Variable(name, tuple(text))
            continue
        sql = expand(v["query"], out, time_range)
        _, rows = _run(conn, sql)
        options = [str(r[0]) for r in rows]
        multi, include_all = bool(v.get("multi")), bool(v.get("includeAll"))
        picked = (
            list(chosen[name]) if chosen and name in chosen else (options if include_all else options[:1])
        )
        unknown = [p for p in picked if p not in options]
        if unknown:
            raise LookupError(f"variable ${name}: {unknown} not among its options {options}")
        out[name] = Variable(name, tuple(picked), multi=multi, include_all=include_all)
    return out


def _numeric(v: Any) -> bool:
    return isinstance(v, int | float | Decimal) and not isinstance(v, bool)


_Cols = list[tuple[str, int]]
_Rows = list[tuple[Any, ...]]


def _shape(panel_type: str, fmt: str, cols: _Cols, rows: _Rows) -> list[str]:
    """Every way the query's result does not fit the panel type (empty when it fits)."""
    rule = _SHAPE_RULES.get(panel_type)
    if rule is None:
        return [f"panel type {panel_type!r} has no shape rule here"]
    return rule(fmt, cols, rows)


def _numeric_columns(cols: _Cols) -> list[int]:
    return [i for i, (_, t) in enumerate(cols) if t in _NUMERIC]


def _all_null(rows: _Rows, columns: list[int]) -> bool:
    """Rows exist but not one of `columns` holds a number in any of them."""
    return bool(rows) and not any(_numeric(r[i]) for r in rows for i in columns)


def _time_key(t: Any) -> float:
    """A time column's value as epoch seconds, for checking the rows' order."""
    if isinstance(t, datetime):
        return t.timestamp()
    if isinstance(t, date):
        return datetime(t.year, t.month, t.day).timestamp()
    return float(t)


def _time_order_problems(times: list[Any]) -> list[str]:
    if any(t is None for t in times):
        return ["NULL in the time column"]
    if times != sorted(times, key=_time_key):
        return ["rows are not sorted by time"]
    return []


def _timeseries_shape(fmt: str, cols: _Cols, rows: _Rows) -> list[str]:
    problems: list[str] = []
    names = [c for c, _ in cols]
    if fmt != "time_series":
        problems.append(f"time series panel with format {fmt!r}")
    if "time" not in names:
        return [*problems, f"no 'time' column (columns: {names})"]
    ti = names.index("time")
    if cols[ti][1] not in _TIME | _NUMERIC:
        problems.append(f"'time' column has type oid {cols[ti][1]}, not a timestamp or epoch")
    values = [i for i in _numeric_columns(cols) if i != ti]
    if not values:
        problems.append(f"no numeric value column (columns: {names})")
    others = [names[i] for i in range(len(cols)) if i != ti and i not in values]
    if others and others != ["metric"]:
        problems.append(f"extra non-numeric columns {others} (only 'metric' names series)")
    problems.extend(_time_order_problems([r[ti] for r in rows]))
    if values and _all_null(rows, values):
        problems.append("every value is NULL")
    return problems


def _stat_shape(fmt: str, cols: _Cols, rows: _Rows) -> list[str]:
    numeric = _numeric_columns(cols)
    if not numeric:
        return [f"stat panel without a numeric column (columns: {[c for c, _ in cols]})"]
    if _all_null(rows, numeric):
        return ["every value is NULL"]
    return []


def _barchart_shape(fmt: str, cols: _Cols, rows: _Rows) -> list[str]:
    problems: list[str] = []
    names = [c for c, _ in cols]
    if not cols or cols[0][1] not in _TEXT | _TIME:
        problems.append(f"bar chart needs a text or time x column first (columns: {names})")
    if not [i for i in _numeric_columns(cols) if i != 0]:
        problems.append(f"bar chart without a numeric column (columns: {names})")
    return problems


def _table_shape(fmt: str, cols: _Cols, rows: _Rows) -> list[str]:
    return [] if cols else ["table query returns no columns"]


_SHAPE_RULES: dict[str, Callable[[str, _Cols, _Rows], list[str]]] = {
    "timeseries": _timeseries_shape,
    "stat": _stat_shape,
    "barchart": _barchart_shape,
    "table": _table_shape,
}
"""Panel type → its shape rule (format, columns as (name, type oid), rows → problems)."""


def check_dashboards(
    conn: psycopg.Connection,
    dashboards: Mapping[str, Mapping[str, Any]],
    time_range: TimeRange,
    chosen: Mapping[str, list[str]] | None = None,
    interval: str = "1h",
) -> Iterable[PanelResult]:
    """Yield one result per panel target; errors become problems, never exceptions."""
    for dname, d in dashboards.items():
        variables = resolve_variables(conn, d, time_range, chosen)
        for p in iter_panels(d):
            for t in p.get("targets", []):
                res = PanelResult(dname, p.get("title", "?"), p.get("type", "?"), "")
                try:
                    res.sql = expand(t["rawSql"], variables, time_range, p.get("interval") or interval)
                    cols, rows = _run(conn, res.sql)
                except (psycopg.Error, LookupError, ValueError, MacroError) as exc:
                    conn.rollback()
                    res.problems.append(f"{type(exc).__name__}: {exc}".strip())
                    yield res
                    continue
                res.columns = [c for c, _ in cols]
                res.rows = len(rows)
                res.problems.extend(_shape(res.panel_type, t.get("format", "table"), cols, rows))
                yield res
