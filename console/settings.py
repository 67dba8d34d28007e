"""Console settings (environment prefix PARKPULSE_CONSOLE_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from parkpulse.settings import get_settings

__all__ = ["ConsoleSettings"]


class ConsoleSettings(BaseSettings):
    """How the console serves, signs in and throttles. Every value has a safe default."""

    model_config = SettingsConfigDict(env_prefix="PARKPULSE_CONSOLE_", extra="ignore")

    database_url: str = Field(default="", description="empty: PARKPULSE_DATABASE_URL")
    cookie_secure: bool = Field(
        default=True, description="Secure flag on cookies; turn off only for local plain-http use"
    )
    session_ttl_s: int = Field(default=8 * 3600, ge=60, description="idle session lifetime")
    session_absolute_s: int = Field(default=24 * 3600, ge=60, description="session lifetime whatever the use")
    throttle_user_free: int = Field(default=5, ge=1, description="failed logins per user before backoff")
    throttle_ip_free: int = Field(default=20, ge=1, description="failed logins per address before backoff")
    throttle_base_s: float = Field(default=2.0, gt=0, description="first backoff; doubles per failure")
    throttle_max_s: float = Field(default=900.0, gt=0, description="longest backoff")
    sse_queue: int = Field(
        default=256,
        ge=8,
        description="notifications buffered per live-feed client; when full the client is told to resync",
    )
    sse_keepalive_s: float = Field(default=15.0, gt=0, description="comment line sent to idle feeds")
    pool_max: int = Field(default=8, ge=1, description="database connections of one console process")
    header_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="a request's line and headers must arrive within this time"
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="a request's body must arrive within this time after its headers",
    )
    keep_alive_s: int = Field(
        default=5, ge=1, le=300, description="idle time before a kept-alive connection closes"
    )
    max_connections: int = Field(
        default=500, ge=10, description="open connections + running requests before new requests get 503"
    )
    max_body_bytes: int = Field(default=256 * 1024, ge=4096, description="largest request body (413 beyond)")
    default_lang: str = Field(default="zh-CN", pattern=r"^(zh-CN|en)$")

    def dsn(self) -> str:
        return self.database_url or get_settings().database_url
