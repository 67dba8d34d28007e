"""Expand a panel's SQL the way Grafana 11.6 does before PostgreSQL sees it.

Grafana runs two passes on a PostgreSQL (``grafana-postgresql-datasource``) query:

1. **Template variables** (front end, ``SqlDatasource.interpolateVariable``): ``$var``,
   ``${var}`` and ``[[var]]`` are replaced by the current value.
   - a single value of a variable that is neither multi-value nor "include All" is inserted
     as is, with ``'`` doubled (so the SQL writes ``'$park'``);
   - a multi-value or include-All variable becomes a comma-joined list of quoted literals
     (``'a','b'``), so the SQL writes ``IN ($firm)``; "All" without a custom all-value is the
     list of every option;
   - ``${var:csv}`` joins without quotes, ``${var:singlequote}`` quotes every value,
     ``${var:raw}`` inserts the value untouched;
   - built-ins: ``$__interval`` (e.g. ``1h``), ``$__interval_ms``, ``$__from`` / ``$__to``
     (epoch milliseconds).
2. **Macros** (back end, pkg/tsdb/grafana-postgresql-datasource/macros.go), time range in UTC:
   - ``$__time(c)`` → ``c AS "time"``; ``$__timeEpoch(c)`` → ``extract(epoch from c) AS "time"``
   - ``$__timeFilter(c)`` → ``c BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-21T05:06:17Z'``
   - ``$__timeFrom()`` / ``$__timeTo()`` → ``'2017-04-21T05:01:17Z'`` (RFC 3339 literal)
   - ``$__timeGroup(c,'5m')`` → ``floor(extract(epoch from c)/300)*300``;
     ``$__timeGroupAlias(c,'5m')`` adds ``AS "time"`` (an optional third fill argument only
     changes how Grafana fills gaps afterwards, not the SQL)
   - ``$__unixEpochFilter(c)`` → ``c >= 1494410783 AND c <= 1494497183``;
     ``$__unixEpochFrom()`` / ``$__unixEpochTo()`` → epoch seconds;
     ``$__unixEpochGroup(c,'5m')`` → ``floor((c)/300)*300`` (``…Alias`` adds ``AS "time"``).

The dashboards' test runs every panel's SQL through this module against a real database;
``parkpulse grafana check`` does the same against a live one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from parkpulse.errors import ParkPulseError

__all__ = ["MacroError", "TimeRange", "Variable", "expand", "interpolate_variables", "interval_seconds"]


class MacroError(ParkPulseError):
    """A panel's SQL uses a macro or variable wrongly."""


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise MacroError(
                f"time range: start and end must be timezone-aware (got {self.start!r}, {self.end!r})"
            )
        if self.end < self.start:
            raise MacroError(
                f"time range: end {self.end.isoformat()} is before start {self.start.isoformat()}"
            )


@dataclass(frozen=True)
class Variable:
    """The current value of one dashboard variable."""

    name: str
    values: tuple[str, ...]
    multi: bool = False
    include_all: bool = False


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def interval_seconds(text: str) -> float:
    """'5m' → 300.0 (Grafana's interval syntax; a bare number is seconds)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)?\s*", text)
    if not m:
        raise MacroError(f"interval: cannot parse {text!r} (expected e.g. '5m', '1h', '1d')")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def _rfc3339(t: datetime) -> str:
    u = t.astimezone(UTC)
    text = u.strftime("%Y-%m-%dT%H:%M:%S")
    if u.microsecond:
        text += f".{u.microsecond:06d}".rstrip("0")
    return text + "Z"


def _quote(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


def _format(var: Variable, fmt: str | None) -> str:
    if fmt == "csv":
        return ",".join(var.values)
    if fmt == "singlequote":
        return ",".join(_quote(v) for v in var.values)
    if fmt == "raw":
        return ",".join(var.values)
    if fmt is not None:
        raise MacroError(f"variable ${{{var.name}:{fmt}}}: format {fmt!r} is not one the dashboards use")
    if var.multi or var.include_all or len(var.values) != 1:
        return ",".join(_quote(v) for v in var.values)
    return var.values[0].replace("'", "''")


_VAR_RE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)(?::(\w+))?\]\]|\$(\w+)")


def interpolate_variables(
    sql: str, variables: Mapping[str, Variable], time_range: TimeRange, interval: str = "1h"
) -> str:
    """Pass 1: template variables and built-ins (macros beginning with `$__` are left alone)."""
    builtins = {
        "__interval": interval,
        "__interval_ms": str(int(interval_seconds(interval) * 1000)),
        "__from": str(int(time_range.start.timestamp() * 1000)),
        "__to": str(int(time_range.end.timestamp() * 1000)),
    }

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3) or m.group(5)
        fmt = m.group(2) or m.group(4)
        if name in builtins:
            return builtins[name]
        if name.startswith("__"):
            return m.group(0)  # a macro: pass 2
        if name not in variables:
            raise MacroError(f"variable ${name}: not defined by the dashboard (SQL: {sql[:80]!r}…)")
        return _format(variables[name], fmt)

    return _VAR_RE.sub(sub, sql)


# Grafana's macro engine (pkg/tsdb/sqleng): `\$(\w+)\(([^\)]*)\)`, arguments split on "," and
# trimmed. An argument therefore cannot contain ")" — the dashboards never nest calls in macros.
_MACRO_RE = re.compile(r"\$(\w+)\(([^\)]*)\)")


def _interval_arg(macro: str, args: Sequence[str]) -> float:
    if len(args) < 2:
        raise MacroError(f"macro $__{macro}: needs (column, 'interval') (got {list(args)!r})")
    return interval_seconds(args[1].strip().strip("'\""))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _expand_one(name: str, args: list[str], tr: TimeRange) -> str:
    frm, to = _rfc3339(tr.start), _rfc3339(tr.end)
    efrm, eto = int(tr.start.timestamp()), int(tr.end.timestamp())

    def col() -> str:
        if not args:
            raise MacroError(f"macro $__{name}: needs a column argument")
        return args[0]

    match name:
        case "time":
            return f'{col()} AS "time"'
        case "timeEpoch":
            return f'extract(epoch from {col()}) AS "time"'
        case "timeFilter":
            return f"{col()} BETWEEN '{frm}' AND '{to}'"
        case "timeFrom":
            return f"'{frm}'"
        case "timeTo":
            return f"'{to}'"
        case "timeGroup" | "timeGroupAlias":
            s = _num(_interval_arg(name, args))
            expr = f"floor(extract(epoch from {col()})/{s})*{s}"
            return expr + (' AS "time"' if name == "timeGroupAlias" else "")
        case "unixEpochFilter":
            return f"{col()} >= {efrm} AND {col()} <= {eto}"
        case "unixEpochFrom":
            return str(efrm)
        case "unixEpochTo":
            return str(eto)
        case "unixEpochGroup" | "unixEpochGroupAlias":
            s = _num(_interval_arg(name, args))
            expr = f"floor(({col()})/{s})*{s}"
            return expr + (' AS "time"' if name == "unixEpochGroupAlias" else "")
    raise MacroError(f"macro $__{name}: not a Grafana PostgreSQL macro")


def expand_macros(sql: str, time_range: TimeRange) -> str:
    """Pass 2: Grafana's PostgreSQL macros."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if not name.startswith("__"):
            raise MacroError(f"macro ${name}(…): not a Grafana macro (template variables take no arguments)")
        args = [a.strip() for a in m.group(2).split(",")] if m.group(2).strip() else []
        return _expand_one(name[2:], args, time_range)

    return _MACRO_RE.sub(sub, sql)


def expand(sql: str, variables: Mapping[str, Variable], time_range: TimeRange, interval: str = "1h") -> str:
    """Both passes, in Grafana's order: variables first, then macros."""
    return expand_macros(interpolate_variables(sql, variables, time_range, interval), time_range)
