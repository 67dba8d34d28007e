"""Settings of the alert engine: env PARKPULSE_ALERTS_* (database/MQTT fall back to PARKPULSE_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from parkpulse.settings import get_settings, parse_mqtt_url

__all__ = ["AlertSettings"]


class AlertSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARKPULSE_ALERTS_", env_file=".env", extra="ignore")

    database_url: str | None = Field(default=None, description="default: PARKPULSE_DATABASE_URL")
    mqtt_url: str | None = Field(default=None, description="default: PARKPULSE_MQTT_URL")
    rules_file: Path | None = Field(default=None, description="default: the shipped data/alert_rules.yaml")
    limits_file: Path | None = Field(
        default=None, description="default: the shipped data/emission_limits.yaml"
    )
    group: str = Field(
        default="alerts", pattern=r"^[a-z0-9-]+$", description="MQTT shared-subscription group"
    )
    park: str = Field(default="+", description="park id to watch, '+' for every park")
    client_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,40}$",
        description="fixed MQTT client id: the data subscription becomes a persistent session (readings published "
        "while the engine is down are evaluated when it is back); default: a random id, no session",
    )
    session_expiry_s: float = Field(
        default=86400.0, gt=0, description="how long the broker keeps that session"
    )
    queue_size: int = Field(
        default=1000,
        ge=1,
        description="batches waiting for evaluation; when full the MQTT reader waits (backpressure to the broker)",
    )
    periodic_interval_s: float = Field(
        default=2.0, gt=0, description="silence / seq-gap / clear-timer checks"
    )
    emission_interval_s: float = Field(default=60.0, gt=0, description="hourly emission evaluation")
    registry_refresh_s: float = Field(default=30.0, gt=0)
    refresh_interval_s: float = Field(
        default=30.0, ge=0, description="how often an open alert's value is rewritten"
    )
    publish_poll_s: float = Field(
        default=2.0, gt=0, description="alert-event publisher wake-up without NOTIFY"
    )
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    webhook_poll_s: float = Field(default=1.0, gt=0)
    webhook_backoff_base_s: float = Field(default=2.0, gt=0)
    webhook_backoff_max_s: float = Field(default=300.0, gt=0)
    webhook_max_age_s: float = Field(default=3 * 86400.0, gt=0, description="then a delivery is marked dead")
    webhook_batch: int = Field(default=50, ge=1)
    drain_timeout_s: float = Field(default=5.0, ge=0)
    http_host: str = "127.0.0.1"
    http_port: int | None = Field(
        default=None, ge=0, le=65535, description="/healthz and /metrics; off when unset, 0 = any"
    )

    def dsn(self) -> str:
        return self.database_url or get_settings().database_url

    def mqtt(self) -> str:
        url = self.mqtt_url or get_settings().mqtt_url
        parse_mqtt_url(url)
        return url
