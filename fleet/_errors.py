"""Errors of the fleet library (all ParkPulseError)."""

from __future__ import annotations

from parkpulse.errors import FieldError, ParkPulseError

__all__ = ["ConfigRejected", "FleetError", "UnknownGateway", "UnknownVersion"]


class FleetError(ParkPulseError):
    """Base of the fleet library's errors."""


class ConfigRejected(FleetError):
    """A configuration or profile refused before anything was stored or sent; `.problems` holds
    every problem found (path, value, reason), not only the first."""

    def __init__(self, what: str, problems: list[FieldError]) -> None:
        self.what = what
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{what}: refused, {len(problems)} problem(s)\n{lines}")


class UnknownGateway(FleetError):
    """The gateway id is not in the registry."""

    def __init__(self, gateway_id: str) -> None:
        self.gateway_id = gateway_id
        super().__init__(f"gateway: no gateway {gateway_id!r} in the registry")


class UnknownVersion(FleetError):
    """No such version of a gateway's configuration or of a profile."""
