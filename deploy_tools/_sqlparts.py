"""SQL fragments shared by the dashboards (they read only the contract views)."""

from __future__ import annotations

__all__ = ["KPI_CTE", "KPI_YEAR", "TO_YEAR", "day_filter"]

# Latest evaluation per firm and year (a re-evaluation under a new rule version supersedes).
KPI_CTE = """
kpi AS (
  SELECT DISTINCT ON (firm_id, year) *
  FROM v_firm_kpi_year
  WHERE park_id = '$park' AND firm_id IN ($firm)
  ORDER BY firm_id, year, evaluated_at DESC
)"""

TO_YEAR = "extract(year FROM $__timeTo()::timestamptz)::int"
FROM_YEAR = "extract(year FROM $__timeFrom()::timestamptz)::int"

# The newest evaluated year not after the end of the dashboard's time range.
KPI_YEAR = f"(SELECT max(year) FROM kpi WHERE year <= {TO_YEAR})"


def day_filter(col: str = "day") -> str:
    """A civil-day column inside the dashboard's time range."""
    return f"{col} BETWEEN $__timeFrom()::timestamptz::date AND $__timeTo()::timestamptz::date"
