"""Evidence export as CSV (UTF-8 with BOM so spreadsheet programs in zh-CN read it right)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

__all__ = ["evidence_csv"]

_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula is prefixed with a quote (CSV injection)."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def evidence_csv(
    alert: dict[str, Any],
    minutes: list[dict[str, Any]],
    hourly: list[dict[str, Any]],
    events: list[dict[str, Any]],
    tables: list[tuple[str, list[str], list[dict[str, Any]]]] | None = None,
) -> str:
    buf = io.StringIO()
    buf.write("\ufeff")
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["# ParkPulse alert evidence"])
    w.writerow(["field", "value"])
    for key in (
        "alert_id",
        "rule_id",
        "rule_version",
        "kind",
        "severity",
        "state",
        "park_id",
        "park_name",
        "firm_id",
        "firm_name",
        "gateway_id",
        "device_id",
        "metric",
        "subject",
        "value",
        "limit_value",
        "unit",
        "opened_at",
        "acked_at",
        "acked_by",
        "resolved_at",
        "resolved_by",
        "message_zh",
        "message_en",
    ):
        w.writerow([key, _cell(alert.get(key))])
    evidence = alert.get("evidence")
    if isinstance(evidence, dict):
        # which limit was used and why (emission alerts), next to limit_value
        for key in (
            "limit_basis_en",
            "limit_basis_zh",
            "limit_id",
            "limit_table",
            "limit_verified",
            "limit_source",
        ):
            if key in evidence:
                w.writerow([key, _cell(evidence[key])])
    if isinstance(evidence, dict):
        names = {name for name, _, _ in tables or []}
        for key, value in evidence.items():
            if key not in names:
                w.writerow([f"evidence.{key}", _cell(value)])
    elif evidence:
        w.writerow(["evidence", _cell(evidence)])
    w.writerow([])
    w.writerow(["resolution", "time", "avg", "min", "max", "n", "n_good", "worst_quality", "unit"])
    for r in minutes:
        w.writerow(
            [
                "minute",
                _cell(r["minute"]),
                r["avg"],
                r["min"],
                r["max"],
                r["n"],
                r["n_good"],
                r["worst_quality"],
                _cell(alert.get("unit")),
            ]
        )
    for r in hourly:
        w.writerow(
            [
                "hour",
                _cell(r["bucket"]),
                r["avg"],
                r["min"],
                r["max"],
                r["n"],
                r["n_good"],
                r["worst_quality"],
                _cell(alert.get("unit")),
            ]
        )
    for name, cols, rows in tables or []:
        w.writerow([])
        w.writerow([f"evidence.{name}", *cols])
        for row in rows:
            w.writerow(["", *(_cell(row.get(c)) for c in cols)])
    w.writerow([])
    w.writerow(["event_id", "at", "actor", "action", "comment", "detail"])
    for e in events:
        w.writerow(
            [
                e["event_id"],
                _cell(e["at"]),
                _cell(e["actor"]),
                _cell(e["action"]),
                _cell(e["comment"]),
                _cell(e["detail"]),
            ]
        )
    return buf.getvalue()
