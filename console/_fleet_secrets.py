"""Secrets of a gateway config never go back to a browser.

The fleet library masks every value under a secret-named key (`fleet.redact_config`, the same
rule as its CLI and API; `fleet.set_desired` puts the stored value back where the mask comes back
unchanged). The console adds one thing on top: a URL in a config (an MQTT source's broker, say)
may carry `user:password@`, so every string holding `://` is shown through the project's URL rule
(`parkpulse.redact.redact_url`: `mqtt://user:***@host`), and a redacted URL that comes back
unchanged takes the stored URL back before the config is saved.

List entries are matched to the stored ones by their `id` / `name` / `device` / `mn` when they
have one, else by position.
"""

from __future__ import annotations

from typing import Any

import fleet
from parkpulse.redact import redact_url

__all__ = ["restore_urls", "shown_config"]

_ENTRY_KEYS = ("id", "name", "device", "mn")


def _redact_urls(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _redact_urls(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_redact_urls(v) for v in node]
    if isinstance(node, str) and "://" in node:
        return redact_url(node)
    return node


def shown_config(config: dict[str, Any]) -> dict[str, Any]:
    """A copy fit to show: secret-named values masked (`fleet.MASK`), URLs without credentials."""
    out: dict[str, Any] = _redact_urls(fleet.redact_config(config))
    return out


def _entry_key(item: object) -> tuple[str, object] | None:
    if isinstance(item, dict):
        for k in _ENTRY_KEYS:
            if isinstance(item.get(k), (str, int)):
                return (k, item[k])
    return None


def _counterpart(old: list[Any], index: int, item: object) -> Any:
    key = _entry_key(item)
    if key is not None:
        return next((o for o in old if _entry_key(o) == key), None)
    return old[index] if index < len(old) else None


def restore_urls(new: Any, old: Any) -> Any:
    """`new` where every URL that came back exactly as it was shown takes the stored URL again."""
    if isinstance(new, dict):
        prev = old if isinstance(old, dict) else {}
        return {k: restore_urls(v, prev.get(k)) for k, v in new.items()}
    if isinstance(new, list):
        prev_list = old if isinstance(old, list) else []
        return [restore_urls(v, _counterpart(prev_list, i, v)) for i, v in enumerate(new)]
    if (
        isinstance(new, str)
        and isinstance(old, str)
        and new != old
        and "://" in old
        and new == redact_url(old)
    ):
        return old
    return new
