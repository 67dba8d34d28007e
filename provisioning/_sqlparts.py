"""SQL fragments shared by the dashboards (they read only the contract views)."""

from __future__ import annotations

__all__ = ["FROM_YEAR", "KPI_CTE", "KPI_YEAR", "PARK_FILTER", "TO_YEAR", "day_filter", "firm_filter"]

# Rows of the park chosen in the dashboard's `park` variable.
PARK_FILTER = "park_id = '$park'"


def firm_filter(alias: str = "", *, park_rows: bool = False) -> str:
    """Rows of the chosen park and firms (the `park` and `firm` variables); `park_rows` keeps the
    park's own rows (firm_id NULL) too; `alias` qualifies the columns (`r` → `r.park_id`)."""
    p = f"{alias}." if alias else ""
    firms = f"{p}firm_id IN ($firm)"
    if park_rows:
        firms = f"({p}firm_id IS NULL OR {firms})"
    return f"{p}{PARK_FILTER} AND {firms}"


# Latest evaluation per firm and year (a re-evaluation under a new rule version supersedes).
KPI_CTE = f"""
kpi AS (
  SELECT DISTINCT ON (firm_id, year) *
  FROM v_firm_kpi_year
  WHERE {firm_filter()}
  ORDER BY firm_id, year, evaluated_at DESC
)"""

TO_YEAR = "extract(year FROM $__timeTo()::timestamptz)::int"
FROM_YEAR = "extract(year FROM $__timeFrom()::timestamptz)::int"

# The newest evaluated year not after the end of the dashboard's time range.
KPI_YEAR = f"(SELECT max(year) FROM kpi WHERE year <= {TO_YEAR})"


def day_filter(col: str = "day") -> str:
    """A civil-day column inside the dashboard's time range."""
    return f"{col} BETWEEN $__timeFrom()::timestamptz::date AND $__timeTo()::timestamptz::date"
