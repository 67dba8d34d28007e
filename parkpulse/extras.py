"""Optional parts of the distribution: which extra a command needs, and a clear error when it is missing.

`pip install parkpulse` is the slim core the edge gateway runs on (MQTT, Modbus, OPC UA, pydantic,
YAML). The platform services (ingest, rules, alerts, console, reports, costs, notify, grafana, the
demo and the `db`/`registry` admin commands) need `pip install 'parkpulse[platform]'`; on a slim
install they stop with `MissingExtra`, which names the extra and the packages that are absent.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, requires, version

from parkpulse.errors import ParkPulseError

__all__ = ["DISTRIBUTION", "PLATFORM_EXTRA", "MissingExtra", "missing_extra_error", "missing_requirements"]

DISTRIBUTION = "parkpulse"
PLATFORM_EXTRA = "platform"

_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*['"]([^'"]+)['"]""")


class MissingExtra(ParkPulseError):
    """A command needs an optional part of the distribution that this environment lacks."""

    def __init__(self, command: str, extra: str, missing: list[str], module: str | None) -> None:
        self.command = command
        self.extra = extra
        self.missing = missing
        self.module = module
        because = f"no module {module!r}" if module else f"{len(missing)} of its packages missing"
        super().__init__(
            f"`{command}` needs the {extra!r} extra, which is not installed here ({because}). "
            f"Install it with: pip install '{DISTRIBUTION}[{extra}]'"
        )


def _extra_requirements(extra: str, dist: str) -> list[str]:
    """Distribution names the extra `extra` of `dist` requires, from the installed metadata."""
    try:
        reqs = requires(dist) or []
    except PackageNotFoundError:  # running from a source tree that was never installed
        return []
    names = []
    for req in reqs:
        requirement, _, marker = req.partition(";")
        m = _NAME.match(requirement)
        extras = set(_EXTRA_MARKER.findall(marker))
        if m and extra in extras:
            names.append(m.group(1))
    return names


def _installed(name: str) -> bool:
    try:
        version(name)
    except PackageNotFoundError:
        return False
    return True


def missing_requirements(extra: str = PLATFORM_EXTRA, dist: str = DISTRIBUTION) -> list[str]:
    """The distributions of `dist[extra]` that are not installed here (empty: the extra is complete)."""
    return [name for name in _extra_requirements(extra, dist) if not _installed(name)]


def missing_extra_error(command: str, exc: ImportError, extra: str = PLATFORM_EXTRA) -> MissingExtra | None:
    """The clear error for `command` failing with `exc` when `extra` is incomplete here; None when
    the extra is installed (then the import error is a real fault, to be shown as it is)."""
    missing = missing_requirements(extra)
    if not missing:
        return None
    return MissingExtra(command, extra, missing, exc.name)
