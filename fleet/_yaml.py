"""A configuration as YAML text and back, and as plain JSON values (what the store and the wire hold)."""

from __future__ import annotations

import json
from typing import Any

import yaml

from parkpulse.errors import FieldError

__all__ = ["as_json_values", "from_yaml", "to_yaml"]


def to_yaml(config: dict[str, Any]) -> str:
    """Block-style YAML in the order of the document, non-ASCII text kept readable."""
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)


def from_yaml(text: str, what: str = "yaml") -> dict[str, Any]:
    """Parse a YAML mapping; FieldError names `what`, the line and column of a syntax error."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise FieldError(what, text[:80], f"not YAML{where}: {problem}") from None
    if not isinstance(doc, dict):
        raise FieldError(what, type(doc).__name__, "must be a mapping of keys to values")
    return as_json_values(doc, what)


def as_json_values(doc: dict[str, Any], what: str = "config") -> dict[str, Any]:
    """`doc` as JSON would carry it (keys as text, no dates, no NaN); FieldError when it cannot be."""
    try:
        out: dict[str, Any] = json.loads(json.dumps(doc, allow_nan=False, ensure_ascii=False))
    except (TypeError, ValueError) as exc:
        raise FieldError(what, type(doc).__name__, f"not representable as JSON: {exc}") from None
    return out
