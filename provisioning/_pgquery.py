"""The query model of Grafana's PostgreSQL datasource, as a grafana-foundation-sdk builder.

The SDK (Grafana 11.6 build) has no PostgreSQL query type, so this is the small missing piece:
a `Dataquery` variant that serialises to the target JSON Grafana stores for
`grafana-postgresql-datasource` panels in code mode (`rawQuery`, `rawSql`, `format`).
"""

from __future__ import annotations

from typing import Any, Literal

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

__all__ = ["DATASOURCE", "DATASOURCE_TYPE", "DATASOURCE_UID", "PostgresQuery", "SqlQuery"]

DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE_UID = "parkpulse-pg"
DATASOURCE = dashboard.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)

Format = Literal["time_series", "table"]


class PostgresQuery(cogvariants.Dataquery):
    """One target of a panel: raw SQL in code mode."""

    def __init__(self, ref_id: str, raw_sql: str, fmt: Format) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format = fmt

    def to_json(self) -> dict[str, Any]:
        return {
            "datasource": {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID},
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }


class SqlQuery(cogbuilder.Builder[PostgresQuery]):
    """Builder: `SqlQuery(sql).table()` or `.time_series()` (default table)."""

    def __init__(self, raw_sql: str, ref_id: str = "A") -> None:
        self._internal = PostgresQuery(ref_id, _tidy(raw_sql), "table")

    def time_series(self) -> SqlQuery:
        self._internal.format = "time_series"
        return self

    def table(self) -> SqlQuery:
        self._internal.format = "table"
        return self

    def build(self) -> PostgresQuery:
        return self._internal


def _tidy(sql: str) -> str:
    lines = [ln.rstrip() for ln in sql.strip("\n").splitlines()]
    indent = min((len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()), default=0)
    return "\n".join(ln[indent:] for ln in lines).strip()
