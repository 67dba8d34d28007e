"""Settings from the environment (PARKPULSE_*) and an optional TOML/YAML-free .env file."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["MqttTarget", "Settings", "get_settings", "parse_mqtt_url"]

DEFAULT_DATABASE_URL = "postgresql://127.0.0.1:5432/parkpulse"
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"


class MqttTarget(BaseModel):
    """A broker address parsed from `mqtt://user:pass@host:port` or `mqtts://…` (TLS)."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = Field(default=None, repr=False)

    def redacted(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}:***@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def parse_mqtt_url(url: str) -> MqttTarget:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"mqtt url: scheme must be mqtt:// or mqtts:// (got {parts.scheme!r})")
    tls = parts.scheme in ("mqtts", "ssl")
    return MqttTarget(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class Settings(BaseSettings):
    """Platform-wide settings. Each service adds its own block with its own prefix."""

    model_config = SettingsConfigDict(env_prefix="PARKPULSE_", env_file=".env", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    mqtt_url: str = DEFAULT_MQTT_URL
    timezone: str = Field(default="Asia/Shanghai", description="civil day boundaries for daily rollups")
    log_level: str = "INFO"

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt(cls, v: str) -> str:
        parse_mqtt_url(v)
        return v

    @property
    def mqtt(self) -> MqttTarget:
        return parse_mqtt_url(self.mqtt_url)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
