"""Report errors: every one is a ParkPulseError; a bad input names its field and value."""

from __future__ import annotations

from parkpulse.errors import FieldError, ParkPulseError

__all__ = ["ReportError", "ReportInputError"]


class ReportError(ParkPulseError):
    """A report cannot be made (no such firm or park, no font to embed, …)."""


class ReportInputError(FieldError):
    """A report request is wrong; `path` names the field (period, format, lang, firm, park)."""
