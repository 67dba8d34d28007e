"""Errors of the notification service."""

from __future__ import annotations

from parkpulse.errors import FieldError, ParkPulseError

__all__ = ["ChannelConfigError", "DeliveryError", "NotifyError"]


class NotifyError(ParkPulseError):
    """Base of the notification service's errors."""


class ChannelConfigError(FieldError, NotifyError):
    """A channel's configuration has a bad field (named, with its value redacted)."""


class DeliveryError(NotifyError):
    """One delivery attempt failed. The text is already free of the channel's secrets."""

    def __init__(self, text: str, status: str | None = None) -> None:
        super().__init__(text)
        self.status = status
