"""Polling DL/T 645 meters: one task per meter on its own schedule, the meters of a bus taking
turns on the line, per-meter backoff; `check`, the address discovery, `build` and `summary`."""

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
from gateway.sources.dlt645._bcd import from_bcd
from gateway.sources.dlt645._client import read_address, read_di
from gateway.sources.dlt645._config import Dlt645Keys, Meter
from gateway.sources.dlt645._errors import AbnormalReply, DecodeError, TransportError
from gateway.sources.dlt645._link import Link
from gateway.sources.dlt645._profiles import Item, Profile
from gateway.sources.dlt645._standard import EditionRules, standard
from gateway.stats import DeviceStats
from parkpulse.catalogue import load_catalogue
from parkpulse.wire import Quality

__all__ = [
    "Dlt645Source",
    "MeterPlan",
    "PollResult",
    "Read",
    "build",
    "check",
    "decode_read",
    "discover",
    "plan_meter",
    "poll",
    "summary",
]

log = logging.getLogger("parkpulse.gateway.dlt645")

GOOD, UNCERTAIN, BAD = Quality.GOOD, Quality.UNCERTAIN, Quality.BAD


@dataclass(frozen=True, slots=True)
class Read:
    """One request: a data identifier and the items its reply holds, in order."""

    di: str
    items: tuple[Item, ...]

    @property
    def nbytes(self) -> int:
        return sum(i.nbytes for i in self.items)


@dataclass(slots=True)
class MeterPlan:
    meter: Meter
    profile: Profile
    rules: EditionRules
    planned: tuple[Read, ...]  # the reads as planned (what a reconciliation compares)
    reads: list[Read] = field(compare=False)  # the reads made now: a refused block becomes single reads
    singles: dict[str, Read]  # metric -> its single read (the fallback when a meter refuses a block)
    multipliers: dict[str, float]
    cumulative: set[str]
    limits: dict[str, tuple[float | None, float | None]]
    timeout_s: float

    @property
    def metrics(self) -> list[str]:
        return [i.metric for r in self.reads for i in r.items]


@dataclass(slots=True)
class PollResult:
    rows: list[list[Any]] = field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None  # transport | exception (the meter's abnormal reply)
    abnormal: int = 0
    decode_errors: int = 0
    good_reads: int = 0
    latency_ms: float = 0.0


def _multiplier(m: Meter, it: Item) -> float:
    k = it.scale
    if it.ratio in ("ct", "ctpt"):
        k *= m.scale.ct_ratio
    if it.ratio in ("pt", "ctpt"):
        k *= m.scale.pt_ratio
    return k


def plan_meter(cfg: Dlt645Keys, m: Meter) -> MeterPlan:
    prof = cfg.dlt645_profiles()[m.profile]
    wanted = [it for it in prof.items if m.metrics is None or it.metric in m.metrics]
    names = {it.metric for it in wanted}
    reads: list[Read] = []
    covered: set[str] = set()
    if m.use_blocks:
        for b in prof.blocks:
            if set(b.metrics) <= names and not covered & set(b.metrics):
                reads.append(Read(b.di.upper(), tuple(prof.item(x) for x in b.metrics)))
                covered |= set(b.metrics)
    singles = {it.metric: Read(it.di.upper(), (it,)) for it in wanted}
    reads += [singles[it.metric] for it in wanted if it.metric not in covered]
    cat = load_catalogue().by_name()
    bus = cfg.dlt645_bus(m.bus)
    return MeterPlan(
        meter=m,
        profile=prof,
        rules=standard().rules(prof.edition),
        planned=tuple(reads),
        reads=reads,
        singles=singles,
        multipliers={it.metric: _multiplier(m, it) for it in wanted},
        cumulative={x for x in names if cat[x].cumulative},
        limits={x: (cat[x].min, cat[x].max) for x in names},
        timeout_s=m.timeout_s or bus.timeout_s,
    )


def decode_read(
    read: Read, data: bytes, multipliers: dict[str, float] | None = None
) -> list[tuple[str, float]]:
    """The values of one reply's data (DI removed). Raises DecodeError when the length or a digit is wrong."""
    if len(data) != read.nbytes:
        raise DecodeError(f"{read.di}: {len(data)} data byte(s), the profile expects {read.nbytes}")
    out: list[tuple[str, float]] = []
    pos = 0
    for it in read.items:
        fmt = it.value_format
        v = from_bcd(data[pos : pos + fmt.nbytes], fmt)
        pos += it.nbytes
        if it.magnitude:
            v = abs(v)
        k = (multipliers or {}).get(it.metric, it.scale)
        out.append((it.metric, v * k))
    return out


def _row(
    plan: MeterPlan, counters: CounterTracker | None, metric: str, value: float, ts_ms: int
) -> list[Any]:
    m = plan.meter
    lo, hi = plan.limits[metric]
    q = UNCERTAIN if (lo is not None and value < lo) or (hi is not None and value > hi) else GOOD
    if metric in plan.cumulative and counters is not None:
        ev = counters.observe(m.id, metric, ts_ms, value, rated_power_kw=m.rated_power_kw)
        if ev is not None:
            return [m.id, metric, ts_ms, value, q, ev]
    return [m.id, metric, ts_ms, value, q]


async def _read_one(
    plan: MeterPlan,
    link: Link,
    read: Read,
    res: PollResult,
    out: list[list[Any]],
    counters: CounterTracker | None,
) -> None:
    """One read into rows; an abnormal reply or bad data spoils only this read. TransportError goes up."""
    m = plan.meter
    try:
        data = await read_di(link, m.address, read.di, plan.rules, plan.timeout_s)
        values = decode_read(read, data, plan.multipliers)
    except AbnormalReply as exc:
        res.abnormal += 1
        res.error, res.error_kind = f"{read.di}: {exc}", "exception"
        values = None
    except DecodeError as exc:
        res.decode_errors += 1
        res.error = f"{read.di}: {exc}"
        values = None
    ts_ms = int(time.time() * 1000)
    if values is None:
        out.extend([m.id, it.metric, ts_ms, None, BAD] for it in read.items)
        return
    res.good_reads += 1
    out.extend(_row(plan, counters, metric, v, ts_ms) for metric, v in values)


async def poll(plan: MeterPlan, link: Link, counters: CounterTracker | None) -> PollResult:
    """Read every request of one meter, holding the line. A silent meter fails the whole poll
    (its metrics bad); an abnormal reply to a block makes the meter's items read one by one from then on."""
    res = PollResult()
    t0 = time.perf_counter()
    rows: list[list[Any]] = []
    async with link.lock:
        for read in list(plan.reads):
            try:
                before = res.abnormal
                await _read_one(plan, link, read, res, rows, counters)
                if len(read.items) > 1 and res.abnormal > before:
                    _unblock(plan, read, rows)
                    for it in read.items:
                        await _read_one(plan, link, plan.singles[it.metric], res, rows, counters)
            except TransportError as exc:
                res.error, res.error_kind = str(exc), "transport"
                break
    res.latency_ms = (time.perf_counter() - t0) * 1000.0
    if res.error_kind == "transport":
        now = int(time.time() * 1000)
        res.rows = [[plan.meter.id, x, now, None, BAD] for x in plan.metrics]
        return res
    res.rows = rows
    return res


def _unblock(plan: MeterPlan, read: Read, rows: list[list[Any]]) -> None:
    """The meter refused a block: drop its bad rows and read its items singly from now on."""
    names = {it.metric for it in read.items}
    rows[:] = [r for r in rows if not (r[1] in names and r[3] is None)]
    i = plan.reads.index(read)
    plan.reads[i : i + 1] = [plan.singles[it.metric] for it in read.items]
    log.info("meter %s refused block %s: reading its items one by one", plan.meter.id, read.di)


class Dlt645Source:
    """The meters of one bus; each polls on its own schedule, taking turns on the line. A
    configuration applied for the same bus is taken meter by meter (`adopt`)."""

    def __init__(
        self, link: Link, plans: list[MeterPlan], ctx: SourceContext, phase_of: dict[str, float]
    ) -> None:
        self.name = f"dlt645:{link.key}"
        self.link = link
        self.plans = plans
        self.ctx = ctx
        self.phase_of = phase_of
        self._stats = {p.meter.id: DeviceStats(p.meter.id, "dlt645", p.meter.interval_s) for p in plans}
        self._tasks = DeviceTasks("dlt645")

    def stats(self) -> list[DeviceStats]:
        return list(self._stats.values())

    def device_plans(self) -> dict[str, MeterPlan]:
        return {p.meter.id: p for p in self.plans}

    def adopt(self, new: Dlt645Source, same: Collection[str]) -> list[asyncio.Task[None]]:
        """Take `new`'s meters on this bus (see `PerDeviceSource.adopt`); `new` itself never runs.
        A kept meter keeps its plan, so a block it refused stays read item by item."""
        old = self.device_plans()
        kept = {p.meter.id for p in new.plans if p.meter.id in same and p.meter.id in old}
        self.plans = [old[p.meter.id] if p.meter.id in kept else p for p in new.plans]
        self._stats = {
            p.meter.id: (self._stats if p.meter.id in kept else new._stats)[p.meter.id] for p in self.plans
        }
        self.phase_of = new.phase_of
        retired = self._tasks.retire([i for i in old if i not in kept])
        for p in self.plans:
            if p.meter.id not in kept:
                self._tasks.start(p.meter.id, self._loop_of(p))
        return retired

    async def run(self) -> None:
        try:
            await self._tasks.run({p.meter.id: self._loop_of(p) for p in self.plans})
        finally:
            self.link.close()

    def _loop_of(self, plan: MeterPlan) -> DeviceLoop:
        return lambda slot: self._meter_loop(plan, self._stats[plan.meter.id], slot)

    async def _meter_loop(self, plan: MeterPlan, st: DeviceStats, slot: PollSlot) -> None:
        phase = self.phase_of.get(plan.meter.id, 0.0)
        await poll_on_schedule(plan.meter.interval_s, phase, st, lambda: self._poll_once(plan, st), slot)

    async def _poll_once(self, plan: MeterPlan, st: DeviceStats) -> float:
        """One poll with its accounting; the backoff to apply (0 for none)."""
        st.polls += 1
        try:
            res = await poll(plan, self.link, self.ctx.counters)
        except Exception as exc:  # a bug must not stop the other meters
            log.exception("meter %s: poll failed unexpectedly", plan.meter.id)
            res = PollResult(error=f"internal: {exc}", error_kind="transport")
        st.requests += len(plan.reads)
        st.last_latency_ms = res.latency_ms
        st.exception_errors += res.abnormal
        st.decode_errors += res.decode_errors
        st.readings += len(res.rows)
        if res.rows:
            self.ctx.emit(res.rows)
        failed = res.error_kind == "transport" or res.good_reads == 0
        if res.error_kind == "transport":
            st.transport_errors += 1
        if res.error is not None:
            st.last_error = res.error
        if not failed:
            st.ok += 1
            st.consecutive_failures = 0
            st.last_ok_ms = int(time.time() * 1000)
            return 0.0
        st.consecutive_failures += 1
        n = st.consecutive_failures
        if n in (1, 2) or n % 10 == 0:
            log.warning(
                "meter %s (%s on %s): %s error: %s (%d in a row)",
                plan.meter.id,
                plan.meter.address,
                self.link.key,
                res.error_kind,
                res.error,
                n,
            )
        return backoff_s(plan.meter.interval_s, n)


def _enabled(cfg: Dlt645Keys) -> list[Meter]:
    return [m for m in cfg.dlt645_meters if m.enabled]


def build(cfg: Dlt645Keys, ctx: SourceContext) -> list[Source]:
    """One source per bus, each polling the enabled meters on it."""
    meters = _enabled(cfg)
    phase = {m.id: (i / max(1, len(meters))) * m.interval_s for i, m in enumerate(meters)}
    sources: list[Source] = []
    for bus in cfg.dlt645_buses:
        plans = [plan_meter(cfg, m) for m in meters if m.bus == bus.name]
        if plans:
            sources.append(Dlt645Source(Link(bus), plans, ctx, phase))
    return sources


def summary(cfg: Dlt645Keys) -> str:
    return f"{len(cfg.dlt645_buses)} DL/T 645 bus(es), {len(cfg.dlt645_meters)} DL/T 645 meter(s)"


async def check(cfg: Dlt645Keys, wait_s: float) -> list[CheckResult]:
    """`parkpulse-gateway check`: every enabled meter read once, bus by bus, one meter at a time."""
    out: list[CheckResult] = []
    for bus in cfg.dlt645_buses:
        meters = [m for m in _enabled(cfg) if m.bus == bus.name]
        if not meters:
            continue
        link = Link(bus)
        try:
            for m in meters:
                plan = plan_meter(cfg, m)
                res = await poll(plan, link, None)
                r = CheckResult(
                    m.id,
                    None
                    if res.error_kind != "transport" and res.good_reads
                    else f"{res.error_kind}: {res.error}",
                    res.latency_ms,
                )
                if r.error is None:
                    units = {it.metric: it.unit for it in plan.profile.items}
                    r.rows = [(row[1], row[3], units[row[1]], int(row[4]), None) for row in res.rows]
                out.append(r)
        finally:
            with contextlib.suppress(Exception):
                link.close()
    return out


async def discover(cfg: Dlt645Keys, bus_name: str, timeout_s: float | None = None) -> str:
    """The address of the one meter on a bus (broadcast read-address, DL/T 645-2007).

    Raises TransportError when nothing answers or when several meters answer at once (garbled)."""
    bus = cfg.dlt645_bus(bus_name)
    link = Link(bus)
    try:
        async with link.lock:
            return await read_address(link, standard().rules("2007"), timeout_s or bus.timeout_s)
    finally:
        link.close()
