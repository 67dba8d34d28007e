"""The `hj212` key of a gateway file (the listening address and the data loggers) and its cross-checks."""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field

from gateway.sources._plugin import DEVICE_PATTERN, NAME_PATTERN, CheckContext, PluginKeys, Strict
from parkpulse.errors import FieldError

__all__ = ["Hj212Keys", "Hj212Listen", "Hj212Logger", "hj212_problems", "split_listen"]


def split_listen(v: str) -> tuple[str, int]:
    """`host:port` (IPv6 as [::1]:port) → (host, port); ValueError saying what is wrong."""
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be host:port with a port 0..65535, e.g. 0.0.0.0:9212")
    return host.strip("[]"), int(port)


def _listen(v: str) -> str:
    split_listen(v)
    return v


def _zone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not an IANA time zone, e.g. Asia/Shanghai") from None
    return v


class Hj212Logger(Strict):
    mn: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="the logger's MN (设备唯一标识)")
    password: str = Field(min_length=1, max_length=64, repr=False, description="its PW (访问密码)")
    device: str = Field(pattern=DEVICE_PATTERN)
    edition: Literal["2017", "2025"] = "2017"
    store: Literal["minute", "real_time"] = Field(
        default="minute", description="which data becomes readings: minute data (CN 2051) or real-time (2011)"
    )


class Hj212Listen(Strict):
    name: str = Field(default="hj212", pattern=NAME_PATTERN)
    listen: Annotated[str, AfterValidator(_listen)]
    timezone: Annotated[str, AfterValidator(_zone)] = "Asia/Shanghai"
    ack_window_ms: float = Field(default=50.0, ge=0, le=2000, description="packets acknowledged together")
    idle_timeout_s: float = Field(default=900.0, gt=0)
    max_connections: int = Field(default=2048, ge=1, le=65535)
    max_segment: int = Field(default=4096, ge=1024, le=9999)
    dead_letter_max_kb: int = Field(default=4096, ge=16)
    request_history: bool = Field(default=True, description="ask a logger again for missing minutes")
    history_max_minutes: int = Field(default=1440, ge=1)
    silent_after_s: float = Field(default=180.0, gt=0)
    loggers: list[Hj212Logger] = Field(min_length=1)


class Hj212Keys(PluginKeys):
    """The top-level key the `hj212` source owns."""

    hj212: Hj212Listen | None = None


def hj212_problems(ctx: CheckContext, *, hj212: Hj212Listen | None) -> list[FieldError]:
    """Every logger's device id unused elsewhere in the file; every MN configured once."""
    if hj212 is None:
        return []
    problems: list[FieldError] = []
    seen: dict[str, int] = {}
    for i, lg in enumerate(hj212.loggers):
        at = f"hj212.loggers[{i}]"
        first = ctx.claim_device(lg.device, at)
        if first is not None:
            problems.append(FieldError(f"{at}.device", lg.device, f"device id already used by {first}"))
        j = seen.setdefault(lg.mn, i)
        if j != i:
            problems.append(FieldError(f"{at}.mn", lg.mn, f"MN already configured by hj212.loggers[{j}]"))
    return problems
