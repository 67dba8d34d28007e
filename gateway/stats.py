"""Per-device counters and timings: what /metrics and /healthz report and `check` prints."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["DeviceStats", "percentile"]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100.0 * (len(s) - 1))))
    return s[k]


@dataclass(slots=True)
class DeviceStats:
    device: str
    source: str
    interval_s: float
    polls: int = 0
    ok: int = 0
    transport_errors: int = 0
    exception_errors: int = 0
    decode_errors: int = 0
    readings: int = 0
    overruns: int = 0
    missed_slots: int = 0
    skipped_backoff: int = 0
    consecutive_failures: int = 0
    last_ok_ms: int | None = None
    last_error: str | None = None
    last_latency_ms: float | None = None
    lags_ms: deque[float] = field(default_factory=lambda: deque(maxlen=512))
    lag_at: deque[float] = field(
        default_factory=lambda: deque(maxlen=512)
    )  # monotonic time of each lag sample
    requests: int = 0

    def add_lag(self, at: float, lag_ms: float) -> None:
        self.lags_ms.append(lag_ms)
        self.lag_at.append(at)

    def recent_lags(self, since: float) -> list[float]:
        return [lag for t, lag in zip(self.lag_at, self.lags_ms, strict=False) if t >= since]

    def wire_health(self, since: float) -> dict[str, float | int]:
        """The status message's `device_health` entry: lag of the latest poll, p99 of polls since `since`
        (monotonic), and the error counters since start. Fields without data are left out."""
        out: dict[str, float | int] = {
            "overruns": self.overruns,
            "timeouts": self.transport_errors,
            "exceptions": self.exception_errors,
        }
        if self.lags_ms:
            out["poll_lag_ms_last"] = round(max(0.0, self.lags_ms[-1]), 3)
        p99 = percentile(self.recent_lags(since), 99)
        if p99 is not None:
            out["poll_lag_ms_p99"] = round(max(0.0, p99), 3)
        return out

    @property
    def state(self) -> str:
        if self.polls == 0:
            return "starting"
        if self.consecutive_failures == 0:
            return "ok"
        return "failing"

    def as_dict(self) -> dict[str, object]:
        lags = list(self.lags_ms)
        return {
            "device": self.device,
            "source": self.source,
            "state": self.state,
            "interval_s": self.interval_s,
            "polls": self.polls,
            "ok": self.ok,
            "transport_errors": self.transport_errors,
            "exception_errors": self.exception_errors,
            "decode_errors": self.decode_errors,
            "readings": self.readings,
            "overruns": self.overruns,
            "missed_slots": self.missed_slots,
            "consecutive_failures": self.consecutive_failures,
            "last_ok_ms": self.last_ok_ms,
            "last_error": self.last_error,
            "last_latency_ms": self.last_latency_ms,
            "poll_lag_p99_ms": percentile(lags, 99),
        }
