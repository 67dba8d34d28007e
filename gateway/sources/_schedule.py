"""The per-device poll schedule the polling sources share (Modbus, DL/T 645), and their device tasks.

Each device polls every `interval_s`, its first poll shifted by its phase so a bus's devices
spread over the interval. A poll never overlaps the previous one: a poll that runs past its next
slot counts an overrun and the missed slots are skipped. The poll itself returns a backoff in
seconds (0 for none); slots inside the backoff are skipped and counted.

`DeviceTasks` holds one poll task per device in the source's own TaskGroup, which stays open
while the source runs, so an applied configuration can start and retire single devices on a
running link (`PerDeviceSource.adopt`). A retired device stops between two polls, never inside
one, so the link's request in flight is always answered before anything else is sent.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from typing import Any, Protocol, Self, runtime_checkable

from gateway.stats import DeviceStats

__all__ = [
    "MAX_BACKOFF_S",
    "DeviceTasks",
    "PerDeviceSource",
    "PollSlot",
    "backoff_s",
    "poll_on_schedule",
]

MAX_BACKOFF_S = 60.0


def backoff_s(interval_s: float, consecutive_failures: int) -> float:
    """interval × 2ⁿ⁻¹ from the second failure in a row on, at most 60 s (or one interval if longer)."""
    if consecutive_failures < 2:
        return 0.0
    return float(min(interval_s * 2 ** (consecutive_failures - 1), max(MAX_BACKOFF_S, interval_s)))


class PollSlot:
    """One device's place in `DeviceTasks`: whether a poll is under way and whether it was retired."""

    __slots__ = ("polling", "retired")

    def __init__(self) -> None:
        self.polling = False
        self.retired = False


async def _poll_in(slot: PollSlot | None, poll_once: Callable[[], Awaitable[float]]) -> float:
    if slot is None:
        return await poll_once()
    slot.polling = True
    try:
        return await poll_once()
    finally:
        slot.polling = False


async def poll_on_schedule(
    interval_s: float,
    phase_s: float,
    st: DeviceStats,
    poll_once: Callable[[], Awaitable[float]],
    slot: PollSlot | None = None,
) -> None:
    """Run `poll_once` on the device's slots until cancelled (or, with `slot`, retired between two
    polls), keeping lag, overruns and skips in `st`."""
    loop = asyncio.get_running_loop()
    nxt = loop.time() + phase_s % interval_s
    backoff_until = 0.0
    while slot is None or not slot.retired:
        delay = nxt - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        start = loop.time()
        if start < backoff_until:
            st.skipped_backoff += 1
        else:
            st.add_lag(time.monotonic(), (start - nxt) * 1000.0)
            backoff = await _poll_in(slot, poll_once)
            if backoff:
                backoff_until = loop.time() + backoff
        nxt += interval_s
        now = loop.time()
        if nxt <= now:
            missed = math.floor((now - nxt) / interval_s) + 1
            st.overruns += 1
            st.missed_slots += missed
            nxt += missed * interval_s


DeviceLoop = Callable[[PollSlot], Coroutine[Any, Any, None]]
"""Makes one device's poll loop, given its slot."""


class DeviceTasks:
    """The poll tasks of one source's devices, one per device id, in a TaskGroup held open while
    the source runs. Before `run` (or after it ended) `start` and `retire` only keep the books:
    `run` starts the loops it is given."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._tg: asyncio.TaskGroup | None = None
        self._running: dict[str, tuple[asyncio.Task[None], PollSlot]] = {}

    @property
    def devices(self) -> list[str]:
        """The devices whose task is running."""
        return list(self._running)

    async def run(self, loops: Mapping[str, DeviceLoop]) -> None:
        """Run `loops` and whatever `start` adds until cancelled."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            try:
                for device, make in loops.items():
                    self.start(device, make)
                await asyncio.Event().wait()  # the group stays open for devices added later
            finally:
                self._tg = None
                self._running.clear()

    def start(self, device: str, make: DeviceLoop) -> None:
        """Start `device`'s loop in the running group (nothing when the source is not running)."""
        if self._tg is None:
            return
        slot = PollSlot()
        task = self._tg.create_task(make(slot), name=f"{self._label}:{device}")
        self._running[device] = (task, slot)

    def retire(self, devices: Collection[str]) -> list[asyncio.Task[None]]:
        """Stop these devices' loops: at once when between polls, else as soon as the poll under
        way ends. The tasks, to wait for."""
        out: list[asyncio.Task[None]] = []
        for device in devices:
            ent = self._running.pop(device, None)
            if ent is None:
                continue
            task, slot = ent
            slot.retired = True
            if not slot.polling:
                task.cancel()
            out.append(task)
        return out


@runtime_checkable
class PerDeviceSource(Protocol):
    """A polling source that takes new device plans on its running link (`adopt`)."""

    name: str

    def stats(self) -> list[DeviceStats]: ...

    async def run(self) -> None: ...

    def device_plans(self) -> Mapping[str, object]:
        """The plan of each device, by device id, as built (compared by the reconciliation)."""
        ...

    def adopt(self, new: Self, same: Collection[str]) -> list[asyncio.Task[None]]:
        """Take `new`'s devices (a source built for the same link): a device in `same` keeps its
        task, stats and plan; the others start with `new`'s plan; devices `new` lacks are retired.
        The retired tasks, to wait for."""
        ...
