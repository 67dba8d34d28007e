"""Errors of the managed configuration."""

from __future__ import annotations

from parkpulse.errors import ParkPulseError

__all__ = ["ManagedStateError"]


class ManagedStateError(ParkPulseError):
    """The state folder of a managed gateway cannot be read or written, or holds a damaged file."""
