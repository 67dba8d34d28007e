"""`parkpulse-gateway check` for the `hj212` source: listen for `wait_s` and map each logger's first data packet.

Nothing is acknowledged during a check (the readings are not spooled), so the loggers send the
same data again to the running gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from gateway.counters import CounterTracker
from gateway.sources._plugin import CheckResult, SourceContext
from gateway.sources.hj212._server import Hj212Receiver
from parkpulse.catalogue import load_catalogue

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

__all__ = ["check"]


async def check(cfg: GatewayConfig, wait_s: float) -> list[CheckResult]:
    if cfg.hj212 is None:
        return []
    units = {m.name: m.unit for m in load_catalogue().metrics}
    first: dict[str, tuple[float, list[list[Any]]]] = {}
    t0 = time.perf_counter()

    def emit(rows: list[list[Any]]) -> None:
        if rows and rows[0][0] not in first:
            first[rows[0][0]] = ((time.perf_counter() - t0) * 1000, rows)

    rx = Hj212Receiver(
        cfg.hj212, SourceContext(emit=emit, counters=CounterTracker()), dead_letters=None, reply=False
    )
    task = asyncio.create_task(rx.run())
    devices = [lg.device for lg in cfg.hj212.loggers]
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not task.done() and len(first) < len(devices):
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    if task.done() and not task.cancelled() and task.exception() is not None and rx.port is None:
        err = f"cannot listen on {cfg.hj212.listen}: {task.exception()}"
        return [CheckResult(d, err) for d in devices]
    out = []
    for lg, st in zip(cfg.hj212.loggers, rx.stats(), strict=True):
        got = first.get(lg.device)
        if got is None:
            why = st.last_error or f"no data packet from MN {lg.mn} within {wait_s:.0f} s"
            out.append(CheckResult(lg.device, why))
            continue
        r = CheckResult(lg.device, None, got[0])
        r.rows = [(x[1], x[3], units.get(x[1], ""), x[4], None) for x in got[1]]
        out.append(r)
    return out
