"""The per-device poll schedule the polling sources share (Modbus, DL/T 645).

Each device polls every `interval_s`, its first poll shifted by its phase so a bus's devices
spread over the interval. A poll never overlaps the previous one: a poll that runs past its next
slot counts an overrun and the missed slots are skipped. The poll itself returns a backoff in
seconds (0 for none); slots inside the backoff are skipped and counted.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from gateway.stats import DeviceStats

__all__ = ["MAX_BACKOFF_S", "backoff_s", "poll_on_schedule"]

MAX_BACKOFF_S = 60.0


def backoff_s(interval_s: float, consecutive_failures: int) -> float:
    """interval × 2ⁿ⁻¹ from the second failure in a row on, at most 60 s (or one interval if longer)."""
    if consecutive_failures < 2:
        return 0.0
    return float(min(interval_s * 2 ** (consecutive_failures - 1), max(MAX_BACKOFF_S, interval_s)))


async def poll_on_schedule(
    interval_s: float, phase_s: float, st: DeviceStats, poll_once: Callable[[], Awaitable[float]]
) -> None:
    """Run `poll_once` on the device's slots until cancelled, keeping lag, overruns and skips in `st`."""
    loop = asyncio.get_running_loop()
    nxt = loop.time() + phase_s % interval_s
    backoff_until = 0.0
    while True:
        delay = nxt - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        start = loop.time()
        if start < backoff_until:
            st.skipped_backoff += 1
        else:
            st.add_lag(time.monotonic(), (start - nxt) * 1000.0)
            backoff = await poll_once()
            if backoff:
                backoff_until = loop.time() + backoff
        nxt += interval_s
        now = loop.time()
        if nxt <= now:
            missed = math.floor((now - nxt) / interval_s) + 1
            st.overruns += 1
            st.missed_slots += missed
            nxt += missed * interval_s
