"""Console errors."""

from __future__ import annotations

from parkpulse.errors import FieldError, ParkPulseError

__all__ = ["AccountError", "ConsoleError"]


class ConsoleError(ParkPulseError):
    """Something the console cannot do."""


class AccountError(FieldError):
    """A user account request is wrong; `path` names the field (user, role, park, firm, password)."""
