"""Settings from the environment (PARKPULSE_*) and an optional TOML/YAML-free .env file."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from parkpulse.errors import ConfigError
from parkpulse.redact import redact_text, redact_url, redact_value

__all__ = ["MqttTarget", "Settings", "describe_settings_error", "get_settings", "parse_mqtt_url"]

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
        """The address fit for logs: `mqtt://user:***@host:port` (the password never shows)."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = quote(self.username, safe="") if self.username else ""
        userinfo = f"{user}:{quote(self.password or '', safe='')}@" if self.username or self.password else ""
        return redact_url(f"{scheme}://{userinfo}{self.host}:{self.port}")


def parse_mqtt_url(url: str) -> MqttTarget:
    """`mqtt://user:pass@host:port` → MqttTarget. A bad URL is refused with the URL shown redacted."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a bad port or IPv6 literal; urllib's message never quotes the URL
        raise ValueError(f"mqtt url: {exc} (got {redact_url(url)!r})") from None
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"mqtt url: scheme must be mqtt:// or mqtts:// (got {redact_url(url)!r})")
    tls = parts.scheme in ("mqtts", "ssl")
    return MqttTarget(
        host=parts.hostname or "127.0.0.1",
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def describe_settings_error(exc: ValidationError, env_prefix: str = "") -> str:
    """One line per problem of a settings model: the field (as its environment variable when
    `env_prefix` is given), the reason and the value found, with secrets redacted."""
    lines = []
    for e in exc.errors(include_url=False):
        field = ".".join(map(str, e["loc"]))
        name = env_prefix + field.upper() if env_prefix else field
        reason = redact_text(str(e["msg"]).removeprefix("Value error, "))
        value = e.get("input")
        got = f" (got {redact_value(field, value)})"
        got = got if field and not isinstance(value, dict) and got not in reason else ""
        lines.append(f"{name}: {reason}{got}" if field else reason)
    return "\n".join(lines)


class Settings(BaseSettings):
    """Platform-wide settings. Each service adds its own block with its own prefix."""

    model_config = SettingsConfigDict(
        env_prefix="PARKPULSE_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    database_url: str = DEFAULT_DATABASE_URL
    database_read_url: str = Field(
        default="",
        description="a streaming replica for read-only work (console read pages, report and rules "
        "input queries); empty: database_url. Rows written on the primary show there after the "
        "replica lag (parkpulse.db.store_health)",
    )
    mqtt_url: str = DEFAULT_MQTT_URL
    timezone: str = Field(default="Asia/Shanghai", description="civil day boundaries for daily rollups")
    log_level: str = "INFO"

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt(cls, v: str) -> str:
        parse_mqtt_url(v)
        return v

    @field_validator("database_read_url")
    @classmethod
    def _check_read_url(cls, v: str) -> str:
        v = v.strip()
        if v:
            try:  # psycopg is a platform package: a gateway-only install reads these settings without it
                from psycopg import ProgrammingError, conninfo
            except ImportError:
                return v  # nothing in a gateway-only install connects to a database
            try:
                conninfo.conninfo_to_dict(v)
            except ProgrammingError as exc:
                raise ValueError(f"not a PostgreSQL URL or DSN ({redact_text(str(exc).strip())})") from None
        return v

    @property
    def mqtt(self) -> MqttTarget:
        return parse_mqtt_url(self.mqtt_url)

    @property
    def read_url(self) -> str:
        """Where read-only work connects: PARKPULSE_DATABASE_READ_URL, else the primary's URL."""
        return self.database_read_url or self.database_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The platform settings; a bad PARKPULSE_* value raises ConfigError naming the variable (redacted)."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(describe_settings_error(exc, "PARKPULSE_")) from None
