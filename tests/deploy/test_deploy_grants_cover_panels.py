"""Grafana's read-only role (deploy/compose/grafana-grants.sql) may read every view and call every
function (pp_…) a panel queries."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _sql_strings(node: object) -> list[str]:
    if isinstance(node, dict):
        out = [v for k, v in node.items() if k in ("rawSql", "query", "definition") and isinstance(v, str)]
        for v in node.values():
            out += _sql_strings(v)
        return out
    if isinstance(node, list):
        return [s for item in node for s in _sql_strings(item)]
    return []


def test_every_view_a_panel_reads_is_granted() -> None:
    used: set[str] = set()
    for path in (ROOT / "deploy/grafana/dashboards").glob("*.json"):
        for sql in _sql_strings(json.loads(path.read_text(encoding="utf-8"))):
            used |= set(re.findall(r"\b(v_[a-z0-9_]+)\b", sql))
    granted = set(
        re.findall(
            r"'(v_[a-z0-9_]+)'", (ROOT / "deploy/compose/grafana-grants.sql").read_text(encoding="utf-8")
        )
    )
    assert len(used) >= 8, used
    assert used - granted == set()


def test_every_function_a_panel_calls_is_granted() -> None:
    used: set[str] = set()
    for path in (ROOT / "deploy/grafana/dashboards").glob("*.json"):
        for sql in _sql_strings(json.loads(path.read_text(encoding="utf-8"))):
            used |= set(re.findall(r"\b(pp_[a-z0-9_]+)\s*\(", sql))
    granted = set(
        re.findall(
            r"'(pp_[a-z0-9_]+)\(", (ROOT / "deploy/compose/grafana-grants.sql").read_text(encoding="utf-8")
        )
    )
    assert {"pp_firm_cost_daily", "pp_firm_cost_monthly"} <= used, used
    assert used - granted == set()
