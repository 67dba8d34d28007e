"""Settings of the notification service: env PARKPULSE_NOTIFY_* (the database falls back to
PARKPULSE_DATABASE_URL, the console's public address to PARKPULSE_CONSOLE_PUBLIC_URL)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from notify._grouping import Rules
from parkpulse.settings import get_settings

__all__ = ["NotifySettings"]


class NotifySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARKPULSE_NOTIFY_", env_file=".env", extra="ignore")

    database_url: str | None = Field(default=None, description="default: PARKPULSE_DATABASE_URL")
    console_url: str | None = Field(
        default=None,
        description="the console's public address for links (default: PARKPULSE_CONSOLE_PUBLIC_URL, "
        "else http://127.0.0.1:8080)",
    )
    start: Literal["latest", "beginning"] = Field(
        default="latest", description="where a new cursor starts in alert_events"
    )
    poll_s: float = Field(default=0.5, gt=0, description="wake-up without a NOTIFY")
    group_window_s: float = Field(default=60.0, ge=0, description="one message per park and kind per window")
    rate_limit: int = Field(
        default=6, ge=1, description="non-critical messages per recipient per rate window"
    )
    rate_window_s: float = Field(default=600.0, gt=0)
    send_timeout_s: float = Field(default=10.0, gt=0)
    concurrency: int = Field(default=16, ge=1, description="messages in flight at once")
    batch: int = Field(default=100, ge=1)
    backoff_base_s: float = Field(default=5.0, gt=0)
    backoff_max_s: float = Field(default=600.0, gt=0)
    max_attempts: int = Field(default=12, ge=1, description="then a message is marked dead")
    max_age_s: float = Field(default=86400.0, gt=0, description="then a message is marked dead")
    lease_s: float = Field(
        default=60.0, gt=0, description="a claimed message is tried again after this if the service stopped"
    )
    http_host: str = "127.0.0.1"
    http_port: int | None = Field(
        default=None, ge=0, le=65535, description="/healthz and /metrics; off when unset"
    )

    def dsn(self) -> str:
        return self.database_url or get_settings().database_url

    def public_console_url(self) -> str:
        return (
            self.console_url or os.environ.get("PARKPULSE_CONSOLE_PUBLIC_URL") or "http://127.0.0.1:8080"
        ).rstrip("/")

    def rules(self) -> Rules:
        return Rules(self.group_window_s, self.rate_limit, self.rate_window_s)
