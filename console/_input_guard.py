"""Refuse control characters at the edge, for every route (an app-wide FastAPI dependency).

Every string a request carries into a route (query parameters, path parameters, form fields and
every string or key inside a JSON body) is checked before the route runs. A NUL or another
control character answers 422 naming the field (`[{field, value, reason}]` in the API, the error
page in the web pages), so no route can hand such text to PostgreSQL, which cannot store NUL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

from parkpulse.text import describe_control, first_control, printable

__all__ = ["MAX_JSON_DEPTH", "refuse_control_characters"]

MAX_JSON_DEPTH = 32
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _shown(field: str, value: str) -> str:
    return "***" if "password" in field.lower() else printable(value)


def _problem(where: str, field: str, value: str, index: int) -> dict[str, Any]:
    return {
        "type": "control_character",
        "loc": (where, field),
        "msg": describe_control(value, index),
        "input": _shown(field, value),
    }


def _pairs(items: Iterator[tuple[str, Any]], where: str) -> list[dict[str, Any]]:
    problems = []
    for key, value in items:
        if (at := first_control(key)) is not None:
            problems.append(_problem(where, printable(key), key, at))
        elif isinstance(value, str) and (at := first_control(value)) is not None:
            problems.append(_problem(where, key, value, at))
    return problems


def _json_strings(node: Any, path: str, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """(path, string) for every key and string value of a JSON document."""
    if depth > MAX_JSON_DEPTH:
        raise RequestValidationError(
            [
                {
                    "type": "json_depth",
                    "loc": ("body", path or "body"),
                    "msg": f"nested deeper than {MAX_JSON_DEPTH} levels",
                    "input": "…",
                }
            ]
        )
    if isinstance(node, str):
        yield path or "body", node
    elif isinstance(node, dict):
        for key, value in node.items():
            name = printable(str(key))
            child = f"{path}.{name}" if path else name
            if first_control(str(key)) is not None:
                yield child, str(key)
            yield from _json_strings(value, child, depth + 1)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _json_strings(value, f"{path}[{i}]", depth + 1)


async def refuse_control_characters(request: Request) -> None:
    """422 when any query, path, form or JSON string of the request holds a control character."""
    problems = _pairs(iter(request.query_params.multi_items()), "query")
    problems += _pairs(iter(request.path_params.items()), "path")
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in _FORM_TYPES:
            form = await request.form()  # cached by Starlette: the route reads the same parsed form
            problems += _pairs(iter(form.multi_items()), "body")
        elif ctype == "application/json" or ctype.endswith("+json"):
            raw = await request.body()
            if raw:
                try:
                    doc = json.loads(raw)
                except ValueError:
                    doc = None  # the route's own body validation reports malformed JSON
                problems += _pairs(_json_strings(doc, ""), "body")
    if problems:
        raise RequestValidationError(problems)
