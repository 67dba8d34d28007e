"""Polling: one task per device on a fixed schedule, per-device backoff, lag and overrun accounting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from gateway.counters import CounterTracker
from gateway.sources._plugin import CheckResult, Source, SourceContext
from gateway.sources._schedule import DeviceLoop, DeviceTasks, PollSlot, backoff_s, poll_on_schedule
from gateway.sources.modbus._config import Device, ModbusKeys, TcpBus
from gateway.sources.modbus._link import ExceptionReply, Link, TransportError
from gateway.sources.modbus._plan import ReadRequest, decode_request, plan_requests
from gateway.sources.modbus._profiles import ResolvedRegister, list_profiles
from gateway.stats import DeviceStats
from parkpulse.catalogue import load_catalogue
from parkpulse.wire import Quality

__all__ = [
    "DevicePlan",
    "ModbusSource",
    "PollResult",
    "build",
    "check",
    "plan_device",
    "read_device_once",
    "summary",
]

log = logging.getLogger("parkpulse.gateway.modbus")


GOOD, UNCERTAIN, BAD = (
    Quality.GOOD,
    Quality.UNCERTAIN,
    Quality.BAD,
)  # the kernel's codes, local for the hot loop


@dataclass(slots=True)
class DevicePlan:
    device: Device
    requests: list[ReadRequest]
    metrics: list[str]
    units: dict[str, str]
    cumulative: set[str]
    limits: dict[str, tuple[float | None, float | None]]
    timeout_s: float


@dataclass(slots=True)
class PollResult:
    rows: list[list[Any]] = field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None  # transport | exception
    latency_ms: float = 0.0


def _multipliers(d: Device, regs: list[ResolvedRegister]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in regs:
        k = 1.0
        if r.ratio == "ct":
            k = d.scale.ct_ratio
        elif r.ratio == "pt":
            k = d.scale.pt_ratio
        elif r.ratio == "ctpt":
            k = d.scale.ct_ratio * d.scale.pt_ratio
        k *= d.scale.factor.get(r.metric, 1.0)
        if k != 1.0:
            out[r.metric] = k
    return out


def plan_device(cfg: ModbusKeys, d: Device) -> DevicePlan:
    profiles = list_profiles([cfg.profiles_dir] if cfg.profiles_dir else None)
    prof = profiles[d.profile]
    regs = [r for r in prof.resolved() if d.metrics is None or r.metric in d.metrics]
    for x in d.registers:
        regs.append(
            ResolvedRegister(
                metric=x.metric,
                pdu=x.address,
                function=x.function,
                type=x.type,
                word_order=x.word_order,
                byte_order=x.byte_order,
                scale=x.scale,
                offset=x.offset,
                unit=x.unit,
                ratio=None,
            )
        )
    max_gap = d.max_gap if d.max_gap is not None else prof.max_gap
    requests = plan_requests(regs, max_gap=max_gap, multipliers=_multipliers(d, regs))
    cat = {m.name: m for m in load_catalogue().metrics}
    bus = cfg.bus(d.bus)
    return DevicePlan(
        device=d,
        requests=requests,
        metrics=[r.metric for r in regs],
        units={r.metric: r.unit for r in regs},
        cumulative={r.metric for r in regs if cat[r.metric].cumulative},
        limits={r.metric: (cat[r.metric].min, cat[r.metric].max) for r in regs},
        timeout_s=d.timeout_s or bus.timeout_s,
    )


async def poll(plan: DevicePlan, link: Link, counters: CounterTracker | None) -> PollResult:
    """Read every request of one device (holding the link) and turn the registers into rows."""
    d = plan.device
    res = PollResult()
    t0 = time.perf_counter()
    decoded: list[tuple[str, float | None, int, float | None]] = []
    async with link.lock:
        for req in plan.requests:
            try:
                regs = await link.read(req.function, req.address, req.count, d.device_id, plan.timeout_s)
            except TransportError as exc:
                res.error, res.error_kind = str(exc), "transport"
                break
            except ExceptionReply as exc:
                res.error, res.error_kind = str(exc), "exception"
                break
            ts_ms = int(time.time() * 1000)  # the moment the value was read
            spans = {f.metric: f.span for f in req.fields}
            for metric, value in decode_request(req, regs):
                decoded.append((metric, value, ts_ms, spans[metric]))
    res.latency_ms = (time.perf_counter() - t0) * 1000.0
    if res.error is not None:
        now = int(time.time() * 1000)
        res.rows = [[d.id, m, now, None, BAD] for m in plan.metrics]
        return res
    rows = res.rows
    for metric, value, ts_ms, span in decoded:
        if value is None:
            rows.append([d.id, metric, ts_ms, None, BAD])
            continue
        lo, hi = plan.limits[metric]
        q = UNCERTAIN if (lo is not None and value < lo) or (hi is not None and value > hi) else GOOD
        if metric in plan.cumulative and counters is not None:
            ev = counters.observe(d.id, metric, ts_ms, value, span=span, rated_power_kw=d.rated_power_kw)
            if ev is not None:
                rows.append([d.id, metric, ts_ms, value, q, ev])
                continue
        rows.append([d.id, metric, ts_ms, value, q])
    return res


class ModbusSource:
    """All devices behind one link; each device polls on its own schedule. A configuration
    applied for the same link is taken device by device (`adopt`)."""

    def __init__(
        self, link: Link, plans: list[DevicePlan], ctx: SourceContext, phase_of: dict[str, float]
    ) -> None:
        self.name = f"modbus:{link.key}"
        self.link = link
        self.plans = plans
        self.ctx = ctx
        self.phase_of = phase_of
        self._stats = {p.device.id: DeviceStats(p.device.id, "modbus", p.device.interval_s) for p in plans}
        self._tasks = DeviceTasks("poll")

    def stats(self) -> list[DeviceStats]:
        return list(self._stats.values())

    def device_plans(self) -> dict[str, DevicePlan]:
        return {p.device.id: p for p in self.plans}

    def adopt(self, new: ModbusSource, same: Collection[str]) -> list[asyncio.Task[None]]:
        """Take `new`'s devices on this link (see `PerDeviceSource.adopt`); `new` itself never runs."""
        old = self.device_plans()
        kept = {p.device.id for p in new.plans if p.device.id in same and p.device.id in old}
        self.plans = [old[p.device.id] if p.device.id in kept else p for p in new.plans]
        self._stats = {
            p.device.id: (self._stats if p.device.id in kept else new._stats)[p.device.id] for p in self.plans
        }
        self.phase_of = new.phase_of
        retired = self._tasks.retire([i for i in old if i not in kept])
        for p in self.plans:
            if p.device.id not in kept:
                self._tasks.start(p.device.id, self._loop_of(p))
        return retired

    async def run(self) -> None:
        try:
            await self._tasks.run({p.device.id: self._loop_of(p) for p in self.plans})
        finally:
            self.link.close()

    def _loop_of(self, plan: DevicePlan) -> DeviceLoop:
        return lambda slot: self._device_loop(plan, self._stats[plan.device.id], slot)

    async def _device_loop(self, plan: DevicePlan, st: DeviceStats, slot: PollSlot) -> None:
        d = plan.device
        await poll_on_schedule(
            d.interval_s, self.phase_of.get(d.id, 0.0), st, lambda: self._poll_once(plan, st), slot
        )

    async def _poll_once(self, plan: DevicePlan, st: DeviceStats) -> float:
        """One poll with its accounting; the backoff to apply (0 for none)."""
        d = plan.device
        st.polls += 1
        try:
            res = await poll(plan, self.link, self.ctx.counters)
        except Exception as exc:  # a bug must not stop the other devices
            log.exception("device %s: poll failed unexpectedly", d.id)
            res = PollResult(error=f"internal: {exc}", error_kind="transport")
        st.last_latency_ms = res.latency_ms
        st.readings += len(res.rows)
        if res.rows:
            self.ctx.emit(res.rows)
        if res.error is None:
            st.ok += 1
            st.consecutive_failures = 0
            st.last_ok_ms = int(time.time() * 1000)
            return 0.0
        st.consecutive_failures += 1
        st.last_error = res.error
        if res.error_kind == "exception":
            st.exception_errors += 1
        else:
            st.transport_errors += 1
        if st.consecutive_failures in (1, 2) or st.consecutive_failures % 10 == 0:
            log.warning(
                "device %s (unit %s on %s): %s error: %s (%d in a row)",
                d.id,
                d.device_id,
                self.link.key,
                res.error_kind,
                res.error,
                st.consecutive_failures,
            )
        return backoff_s(d.interval_s, st.consecutive_failures)


def _links(cfg: ModbusKeys) -> dict[str, tuple[Link, list[Device]]]:
    out: dict[str, tuple[Link, list[Device]]] = {}
    for d in cfg.devices:
        if not d.enabled:
            continue
        bus = cfg.bus(d.bus)
        if isinstance(bus, TcpBus):
            host, port = d.host or bus.host, d.port or bus.port
            key = f"{bus.name}:{host}:{port}"
            if key not in out:
                out[key] = (Link(bus, host, port), [])
        else:
            key = f"{bus.name}:{bus.port}"
            if key not in out:
                out[key] = (Link(bus), [])
        out[key][1].append(d)
    return out


def build(cfg: ModbusKeys, ctx: SourceContext) -> list[Source]:
    """One source per link, each polling the enabled devices behind it."""
    sources: list[Source] = []
    enabled = [d for d in cfg.devices if d.enabled]
    # spread the devices' first polls over their interval so they do not all fire at once
    phase = {d.id: (i / max(1, len(enabled))) * d.interval_s for i, d in enumerate(enabled)}
    for link, devices in _links(cfg).values():
        plans = [plan_device(cfg, d) for d in devices]
        sources.append(ModbusSource(link, plans, ctx, phase))
    return sources


def summary(cfg: ModbusKeys) -> str:
    return f"{len(cfg.buses)} bus(es), {len(cfg.devices)} Modbus device(s)"


async def read_device_once(cfg: ModbusKeys, d: Device) -> tuple[DevicePlan, PollResult]:
    """Read one device once (for `check`), on its own connection."""
    bus = cfg.bus(d.bus)
    link = Link(bus, d.host or bus.host, d.port or bus.port) if isinstance(bus, TcpBus) else Link(bus)
    plan = plan_device(cfg, d)
    try:
        res = await poll(plan, link, None)
    finally:
        with contextlib.suppress(Exception):
            link.close()
    return plan, res


async def check(cfg: ModbusKeys, wait_s: float) -> list[CheckResult]:
    """`parkpulse-gateway check`: every enabled device read once, one after the other (`wait_s` is for listeners)."""
    out: list[CheckResult] = []
    for d in cfg.devices:
        if not d.enabled:
            continue
        plan, res = await read_device_once(cfg, d)
        r = CheckResult(
            d.id, res.error if res.error is None else f"{res.error_kind}: {res.error}", res.latency_ms
        )
        if res.error is None:
            r.rows = [
                (row[1], row[3], plan.units.get(row[1], ""), row[4], row[5] if len(row) > 5 else None)
                for row in res.rows
            ]
        out.append(r)
    return out
