"""Errors of the simulators (the package imports nothing of the project, so it has its own)."""

from __future__ import annotations

__all__ = ["RegisterMapError", "ScenarioError", "SimulatorError"]


class SimulatorError(Exception):
    """Base class of every simulator error."""


class RegisterMapError(SimulatorError):
    """A register map file is wrong: names the file, the field and the value."""

    def __init__(self, source: str, field: str, value: object, reason: str) -> None:
        self.source, self.field, self.value, self.reason = source, field, value, reason
        super().__init__(f"{source}: {field}: {reason} (got {value!r})")


class ScenarioError(SimulatorError):
    """A scenario file is wrong: lists every problem with its path in the file."""

    def __init__(self, source: str, problems: list[tuple[str, object, str]]) -> None:
        self.source, self.problems = source, problems
        lines = "; ".join(f"{path}: {reason} (got {value!r})" for path, value, reason in problems)
        super().__init__(f"{source}: {lines}")
