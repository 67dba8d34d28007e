"""Settings of the ingest service: environment variables PARKPULSE_INGEST_* (see ingest/README.md)."""

from __future__ import annotations

import hashlib
import socket

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from parkpulse.settings import get_settings, parse_mqtt_url

__all__ = ["IngestSettings", "default_client_id"]

# PBKDF2 rounds of the client id's tag: the tag is logged, so a weak broker password must stay
# expensive to guess from it (about 0.1 s once per start).
_TAG_ROUNDS = 200_000


def default_client_id(host: str, group: str, secret: str) -> str:
    """`pp-ingest-{host}-{group}-{tag}`: the tag (16 hex digits) is derived from the per-install
    secret, so the id is stable across restarts but cannot be guessed by another broker account.
    Without a secret (an anonymous private broker) there is nothing to derive it from."""
    base = f"pp-ingest-{host}-{group}"
    if not secret:
        return base
    tag = hashlib.pbkdf2_hmac("sha256", secret.encode(), base.encode(), _TAG_ROUNDS, dklen=8).hex()
    return f"{base}-{tag}"


class IngestSettings(BaseSettings):
    """Everything the ingest service can be told. Validated at init, before anything starts."""

    model_config = SettingsConfigDict(env_prefix="PARKPULSE_INGEST_", env_file=".env", extra="ignore")

    database_url: str = Field(default="", description="PostgreSQL URL (default: PARKPULSE_DATABASE_URL)")
    mqtt_url: str = Field(default="", description="broker URL (default: PARKPULSE_MQTT_URL)")

    group: str = Field(default="ingest", pattern=r"^[A-Za-z0-9_-]+$", description="shared-subscription group")
    park: str = Field(default="+", description="subscribe to one park only, or + for all")
    client_id: str = Field(
        default="",
        description="MQTT client id, used as given; fixed per process so its session survives restarts "
        "(default pp-ingest-{host}-{group}-{tag}, the tag derived from client_id_secret)",
    )
    client_id_secret: SecretStr = Field(
        default=SecretStr(""),
        description="per-install secret the default client id's tag is derived from, so no other account can "
        "guess the id and take over the session (default: the password of the broker URL)",
    )
    session_expiry_s: int = Field(
        default=86_400, ge=60, description="broker keeps the session (and unacked messages) this long"
    )
    receive_maximum: int = Field(
        default=1000, ge=10, le=65_535, description="MQTT 5 Receive Maximum: unacked messages in flight"
    )
    keepalive_s: int = Field(default=30, ge=5)
    reconnect_min_s: float = Field(
        default=0.25, gt=0, description="first reconnect delay (doubles per failure)"
    )
    reconnect_max_s: float = Field(
        default=2.0,
        gt=0,
        description="reconnect delay bound: back within about this long after a broker restart",
    )

    queue_max_bytes: int = Field(
        default=24 * 1024 * 1024,
        ge=1024 * 1024,
        description="backpressure: payload bytes held between the MQTT reader and the decoder; when full "
        "the reader waits and the broker keeps the rest (nothing is dropped)",
    )
    flush_max_readings: int = Field(
        default=120_000, ge=1, description="readings per database transaction (upper bound)"
    )
    flush_max_messages: int = Field(
        default=400, ge=1, description="messages per transaction (keep below receive_maximum / 2)"
    )
    flush_interval_s: float = Field(
        default=0.25, gt=0, description="a transaction starts at most this long after its first message"
    )
    seq_from_first_seen: bool = Field(
        default=False,
        description="count a new gateway's sequence from its first batch seen instead of 0 (gateways joining "
        "with a history); by default a first batch with seq N records seqs 0..N-1 as a gap",
    )
    max_future_s: float = Field(
        default=600.0, ge=0, description="readings stamped further ahead of the clock are dead-lettered"
    )
    history_before_registration_days: float = Field(
        default=365.0,
        ge=0,
        description="readings stamped more than this many days before their device's registration are dead-lettered "
        "(raise it for a history import; readings before 2000-01-01 are always refused)",
    )
    stall_after_s: float = Field(
        default=60.0,
        gt=0,
        description="/healthz says failing when messages wait and no transaction has committed for this long",
    )

    cache_refresh_s: float = Field(default=60.0, gt=0, description="registry cache refresh period")
    cache_miss_refresh_s: float = Field(
        default=1.0, ge=0, description="on an unknown device/metric refresh at most this often"
    )
    rollup_interval_s: float = Field(
        default=30.0, ge=0, description="run the rollup refresher this often (0 = never)"
    )
    rollup_max_buckets: int = Field(
        default=5000,
        ge=1,
        description="15-minute buckets refreshed per round, newest first: a huge backfill is worked off over "
        "several rounds and cannot starve live data",
    )
    rollup_max_rounds: int = Field(
        default=4, ge=1, description="rounds per refresh run while each one is full"
    )
    gaps_gauge_interval_s: float = Field(
        default=5.0, gt=0, description="refresh the open-gap gauges this often"
    )
    prune_interval_s: float = Field(
        default=300.0, gt=0, description="prune ingest_batches rows below the watermark this often"
    )
    prune_keep_s: float = Field(
        default=3600.0, ge=0, description="keep pruned-eligible batch keys at least this long"
    )

    resend_delay_s: float = Field(
        default=5.0,
        ge=0,
        description="ask a gateway to re-send a missing batch range once its seq gap is this old "
        "(shorter gaps are usually two ingest processes committing out of order)",
    )
    resend_retry_min_s: float = Field(default=15.0, gt=0, description="first wait before asking again")
    resend_retry_max_s: float = Field(
        default=300.0, gt=0, description="bound of the doubling wait between requests"
    )
    resend_max_attempts: int = Field(
        default=8, ge=0, description="requests per gap before giving up (0 = never ask)"
    )
    resend_max_batches: int = Field(
        default=500, ge=1, le=100_000, description="seqs asked for in one request"
    )
    resend_interval_s: float = Field(default=1.0, gt=0, description="how often open gaps are checked")

    http_host: str = "127.0.0.1"
    http_port: int = Field(
        default=9108, ge=0, le=65_535, description="/metrics and /healthz (0 = a free port)"
    )
    leave_group_on_exit: bool = Field(
        default=False,
        description="on SIGTERM leave the shared group for good (scale-in): unsubscribe, commit what the broker "
        "still holds for this client, then end the session; by default the session stays so a restart resumes",
    )
    graceful_timeout_s: float = Field(
        default=15.0, gt=0, description="SIGTERM: time allowed to drain and commit"
    )
    gil_switch_interval_s: float = Field(
        default=0.0005, gt=0, le=0.05, description="sys.setswitchinterval for the process"
    )
    db_retry_min_s: float = Field(default=0.2, gt=0)
    db_retry_max_s: float = Field(default=5.0, gt=0)

    @field_validator("park")
    @classmethod
    def _park(cls, v: str) -> str:
        if v != "+" and not v.replace("-", "").isalnum():
            raise ValueError(f"park must be a park id or + (got {v!r})")
        return v

    @model_validator(mode="after")
    def _defaults(self) -> IngestSettings:
        kernel = get_settings()
        if not self.database_url:
            self.database_url = kernel.database_url
        if not self.mqtt_url:
            self.mqtt_url = kernel.mqtt_url
        parse_mqtt_url(self.mqtt_url)
        if not self.client_id:
            host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40]
            secret = self.client_id_secret.get_secret_value() or parse_mqtt_url(self.mqtt_url).password or ""
            self.client_id = default_client_id(host, self.group, secret)
        if self.flush_max_messages * 2 > self.receive_maximum:
            self.flush_max_messages = max(1, self.receive_maximum // 2)
        return self
