"""Pydantic models of the wire contract (version 1). The JSON Schema in docs/ is generated from these."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from parkpulse.wire._config_state import ConfigState
from parkpulse.wire._limits import INT32_MAX, INT64_MAX
from parkpulse.wire._quality import Quality
from parkpulse.wire._topics import ID_PATTERN

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(ts: datetime) -> int:
    """Exact milliseconds since the epoch (no float rounding)."""
    return (ts - _EPOCH) // timedelta(milliseconds=1)


__all__ = ["WIRE_VERSION", "Batch", "CounterEvent", "DeviceHealth", "Gap", "Reading", "Status", "epoch_ms"]

WIRE_VERSION = 1
Id = Annotated[str, Field(pattern=ID_PATTERN)]
DeviceId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")]


class CounterEvent(BaseModel):
    """Set by the gateway on a cumulative reading where the counter did not simply rise."""

    model_config = ConfigDict(extra="forbid")

    event: Literal["reset", "rollover", "replaced", "jump"]
    prev: float = Field(
        allow_inf_nan=False, description="the previous reading of the counter, before the event"
    )
    correction: float = Field(
        allow_inf_nan=False,
        description=(
            "amount to add to (value - prev) to get the true consumption across the step: "
            "reset → prev (counter restarted at 0), rollover → the register span, "
            "replaced → prev - value (new meter, no consumption counted for the step), "
            "jump → -(value - prev) (implausible jump counted as zero)"
        ),
    )


class Reading(BaseModel):
    """One value read at the edge. On the wire it is the array [d, m, t, v, q] or [d, m, t, v, q, ev]."""

    model_config = ConfigDict(extra="forbid")

    device: DeviceId
    metric: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="a name from the metric catalogue")
    ts: datetime = Field(description="UTC time the value was read at the edge")
    value: float | None = Field(description="null only when quality is bad")
    quality: Quality = Quality.GOOD
    event: CounterEvent | None = None

    @field_validator("ts")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("timestamp must carry a time zone (UTC)")
        return v.astimezone(UTC)

    @model_validator(mode="after")
    def _value(self) -> Reading:
        if self.value is None and self.quality != Quality.BAD:
            raise ValueError("value may be null only with quality bad")
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError("value must be finite")
        return self

    def to_wire(self) -> list[Any]:
        row: list[Any] = [
            self.device,
            self.metric,
            epoch_ms(self.ts),
            self.value,
            int(self.quality),
        ]
        if self.event is not None:
            row.append(self.event.model_dump())
        return row


class Gap(BaseModel):
    """A span the gateway knows it lost (e.g. readings thinned from a full spool)."""

    model_config = ConfigDict(extra="forbid")

    device: str | None = None
    metric: str | None = None
    start: datetime
    end: datetime
    count: int = Field(ge=0, le=INT32_MAX, description="readings dropped")
    reason: str


class Batch(BaseModel):
    """`pp/v1/{park}/{firm}/{gateway}/data`, QoS 1."""

    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = 1
    gateway: Id
    seq: int = Field(ge=0, le=INT64_MAX, description="per-gateway, assigned when spooled, never reused")
    sent_at: datetime
    readings: list[Reading] = Field(
        json_schema_extra={"description": "each reading as [device, metric, ts_ms, value, quality(, event)]"}
    )
    gaps: list[Gap] = Field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": self.v,
            "gateway": self.gateway,
            "seq": self.seq,
            "sent_at": epoch_ms(self.sent_at),
            "readings": [r.to_wire() for r in self.readings],
        }
        if self.gaps:
            out["gaps"] = [g.model_dump(mode="json") for g in self.gaps]
        return out


class DeviceHealth(BaseModel):
    """How polling one device goes at the gateway; carried in the status message (all optional)."""

    model_config = ConfigDict(extra="forbid")

    poll_lag_ms_last: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="lag of the latest poll behind its slot, ms"
    )
    poll_lag_ms_p99: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="99th percentile poll lag over the gateway's recent window, ms",
    )
    overruns: int | None = Field(
        default=None, ge=0, le=INT64_MAX, description="polls that took longer than the poll interval"
    )
    timeouts: int | None = Field(
        default=None, ge=0, le=INT64_MAX, description="polls lost to transport errors or timeouts"
    )
    exceptions: int | None = Field(
        default=None, ge=0, le=INT64_MAX, description="polls answered with a Modbus exception"
    )


class Status(BaseModel):
    """`pp/v1/{park}/{firm}/{gateway}/status`, retained; birth and last-will."""

    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = 1
    gateway: Id
    state: Literal["online", "offline"]
    ts: datetime | None = None
    version: str | None = Field(default=None, max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")
    devices: list[Annotated[str, Field(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]] = Field(
        default_factory=list
    )
    spool_depth: int | None = Field(default=None, ge=0, le=INT32_MAX)
    last_seq: int | None = Field(default=None, ge=0, le=INT64_MAX)
    device_health: dict[str, DeviceHealth] = Field(
        default_factory=dict, description="per device id: poll lag and error counters (optional)"
    )
    config: ConfigState | None = Field(
        default=None, description="managed or local configuration, desired and applied versions (optional)"
    )
