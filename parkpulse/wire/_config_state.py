"""What a gateway says about its configuration, in its retained status (field `config`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from parkpulse.wire._limits import INT64_MAX

__all__ = ["ConfigState"]

_Text = Field(default=None, max_length=500, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")


class ConfigState(BaseModel):
    """The `config` field of a gateway's retained status."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["local", "managed"]
    desired_version: int | None = Field(default=None, ge=1, le=INT64_MAX)
    applied_version: int | None = Field(default=None, ge=1, le=INT64_MAX)
    applied_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    state: Literal["applied", "rejected", "rolled_back", "applying"] | None = None
    reason: str | None = _Text
    at: int | None = Field(
        default=None, ge=0, le=INT64_MAX, description="ms since the epoch of the last change"
    )
