"""Secrets inside a configuration (device passwords, OPC UA credentials, HJ 212 access passwords):
masked whenever a configuration is shown, and a masked value sent back keeps the stored one."""

from __future__ import annotations

from typing import Any

from parkpulse.errors import FieldError
from parkpulse.redact import MASK, is_secret_name

__all__ = ["MASK", "redact_config", "restore_secrets"]


def redact_config(value: Any) -> Any:
    """A copy with every text value under a secret-named key (password, token, key …) replaced by MASK."""
    if isinstance(value, dict):
        return {
            k: MASK if isinstance(v, str) and v and is_secret_name(str(k)) else redact_config(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_config(v) for v in value]
    return value


def restore_secrets(
    new: dict[str, Any], old: dict[str, Any] | None
) -> tuple[dict[str, Any], list[FieldError]]:
    """`new` with each MASK under a secret-named key replaced by the value at the same place in
    `old` (list entries matched by their `id` or `name`, else by position); a MASK with nothing
    to keep is a problem."""
    problems: list[FieldError] = []
    out = _restore(new, old, "", problems)
    return out, problems


def _restore(new: Any, old: Any, path: str, problems: list[FieldError]) -> Any:
    if isinstance(new, dict):
        prev = old if isinstance(old, dict) else {}
        return {
            k: _restore_value(str(k), v, prev.get(k), f"{path}.{k}" if path else str(k), problems)
            for k, v in new.items()
        }
    if isinstance(new, list):
        prev_list = old if isinstance(old, list) else []
        return [
            _restore(item, _counterpart(item, i, prev_list), f"{path}[{i}]", problems)
            for i, item in enumerate(new)
        ]
    return new


def _restore_value(key: str, value: Any, old: Any, path: str, problems: list[FieldError]) -> Any:
    if value == MASK and is_secret_name(key):
        if isinstance(old, str) and old != MASK:
            return old
        problems.append(
            FieldError(path, value, "a masked secret with no stored value to keep: give the value")
        )
        return value
    return _restore(value, old, path, problems)


def _counterpart(item: Any, i: int, old: list[Any]) -> Any:
    if isinstance(item, dict):
        for key in ("id", "name"):
            if key in item:
                return next((o for o in old if isinstance(o, dict) and o.get(key) == item[key]), None)
    return old[i] if i < len(old) else None
