"""Error hierarchy. Every subsystem's errors subclass ParkPulseError."""

from __future__ import annotations

from collections.abc import Container, Iterable

from parkpulse.redact import redact_value

__all__ = [
    "ConfigError",
    "FieldError",
    "ParkPulseError",
    "StoreError",
    "ValidationReport",
    "WireError",
    "field_path",
]


class ParkPulseError(Exception):
    """Base of every error ParkPulse raises on purpose."""


class ConfigError(ParkPulseError):
    """A configuration or data file is wrong."""


class StoreError(ParkPulseError):
    """The database is unreachable or not in the expected shape."""


class FieldError(ParkPulseError):
    """One field has a bad value. `path` names the field, `value` is what was found."""

    def __init__(self, path: str, value: object, reason: str) -> None:
        self.path = path
        self.value = value
        self.reason = reason
        shown = self.shown_value
        got = f" (got {shown})"
        super().__init__(
            f"{path}: {reason}" + ("" if got in reason else got)
        )  # said once when the reason says it

    @property
    def shown_value(self) -> str:
        """repr() of the value fit to print: URLs redacted, masked whole in a secret-named field."""
        return redact_value(self.path, self.value)


class WireError(FieldError):
    """A message on the wire breaks the contract."""


class ValidationReport(ParkPulseError):
    """Every problem found in one input, collected rather than stopping at the first."""

    def __init__(self, source: str, problems: list[FieldError]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


def field_path(loc: Iterable[object], prefix: str = "", *, skip: Container[object] = ()) -> str:
    """A validation error's location as the path a person finds in the file, e.g. `firms[0].gateways[1].id`.

    `skip` names location parts that are not keys in the file (pydantic's tagged-union branch
    names), dropped where they follow a list index.
    """
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in skip and out.endswith("]"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(file)"
