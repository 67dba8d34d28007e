"""The running source: one session per `opcua` entry, subscriptions or polling per node, reconnect with backoff.

Per connection: connect (security, identity) → resolve every node (browse paths from the Root
folder) → one subscription holding the monitored items of the subscribed nodes, a polling
task per device for its polled nodes, and a task that re-sends a subscribed value that has not
changed for `repeat_s` → wait for the loss (asyncua's watchdog, or a failed read) → every
device counts a transport error and sends its metrics as `bad` → back off (min → max, doubling)
→ connect again. A node the server refuses (unknown id, unresolved browse path, bad status)
is counted on its own device; the other nodes and devices go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeNotif

from gateway.sources._plugin import CheckResult, Source, SourceContext
from gateway.sources.opcua._config import OpcuaDevice, OpcuaKeys, OpcuaServer
from gateway.sources.opcua._errors import OpcuaError, OpcuaRefused, OpcuaTransportError
from gateway.sources.opcua._session import (
    classify,
    close_client,
    open_client,
    read_nodes,
    resolve_nodes,
    ts_ms,
)
from gateway.sources.opcua._values import NodeSpec, Outcome, to_row
from gateway.stats import DeviceStats
from parkpulse.catalogue import load_catalogue
from parkpulse.wire import Quality

__all__ = ["OpcuaSource", "build", "check", "summary"]

log = logging.getLogger("parkpulse.gateway.opcua")


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class _Live:
    """A subscribed node's last value, for the repeat of a steady value."""

    value: Any
    status: int
    sent_at: float


@dataclass(slots=True)
class _DeviceView:
    device: OpcuaDevice
    specs: list[NodeSpec]
    stats: DeviceStats
    polled: list[int] = field(default_factory=list)  # indexes into specs
    subscribed: list[int] = field(default_factory=list)


def _specs(server: OpcuaServer) -> list[_DeviceView]:
    cat = load_catalogue().by_name()
    views = []
    for d in server.devices:
        specs = [NodeSpec.of(d.id, n, cat[n.metric]) for n in d.nodes]
        mode = d.mode or server.mode
        v = _DeviceView(d, specs, DeviceStats(d.id, "opcua", d.poll_interval_s or server.poll_interval_s))
        for i, n in enumerate(d.nodes):
            (v.polled if (n.mode or mode) == "poll" else v.subscribed).append(i)
        views.append(v)
    return views


class OpcuaSource:
    """One OPC UA server connection and every device read through it."""

    def __init__(self, server: OpcuaServer, ctx: SourceContext) -> None:
        self.server = server
        self.name = f"opcua:{server.name}"
        self.ctx = ctx
        self.views = _specs(server)
        self.connected = False
        self.sessions = 0
        """Sessions opened so far (the first connect and every reconnect)."""
        self.subscriptions = 0
        """Subscriptions created so far."""
        self._live: dict[tuple[int, int], _Live] = {}
        self._lost: asyncio.Event | None = None
        self._lost_reason = ""

    def stats(self) -> list[DeviceStats]:
        return [v.stats for v in self.views]

    # ------------------------------------------------------------------ loop
    async def run(self) -> None:
        s = self.server
        delay = s.reconnect_min_s
        while True:
            t0 = time.monotonic()
            try:
                await self._session()
            except OpcuaError as exc:
                self._outage(exc)
            if time.monotonic() - t0 > s.reconnect_max_s:  # it ran a good while: start the backoff over
                delay = s.reconnect_min_s
            log.info("opcua %s: reconnecting in %.1f s", s.name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, s.reconnect_max_s)

    def _outage(self, exc: OpcuaError) -> None:
        """Every device of the connection counts the failure and sends its metrics as bad."""
        now = _now_ms()
        transport = isinstance(exc, OpcuaTransportError)
        for v in self.views:
            st = v.stats
            st.polls += 1
            st.consecutive_failures += 1
            st.last_error = str(exc)
            if transport:
                st.transport_errors += 1
            else:
                st.exception_errors += 1
            rows: list[list[Any]] = [[v.device.id, sp.node.metric, now, None, Quality.BAD] for sp in v.specs]
            st.readings += len(rows)
            self.ctx.emit(rows)
        level = logging.WARNING if self.views[0].stats.consecutive_failures <= 2 else logging.DEBUG
        log.log(level, "opcua %s: %s", self.server.name, exc)

    async def _session(self) -> None:
        """One connection's life: returns (raising OpcuaError) when it is lost or refused."""
        lost = self._lost = asyncio.Event()
        self._lost_reason = "connection lost"

        async def on_lost(exc: Exception) -> None:
            self._lost_reason = str(classify(exc, "connection lost"))
            lost.set()

        client = await open_client(self.server, on_lost)
        self.sessions += 1
        self.connected = True
        self._live.clear()
        tasks: list[asyncio.Task[None]] = []
        try:
            log.info("opcua %s: connected to %s", self.server.name, self.server.url)
            nodes = await self._resolve(client)
            await self._subscribe(client, nodes)
            for vi, v in enumerate(self.views):
                if v.polled:
                    tasks.append(
                        asyncio.create_task(
                            self._poll_loop(client, vi, nodes), name=f"opcua-poll:{v.device.id}"
                        )
                    )
            tasks.append(asyncio.create_task(self._repeat_loop(), name=f"opcua-repeat:{self.server.name}"))
            await lost.wait()
            raise OpcuaTransportError(f"{self.server.url}: {self._lost_reason}")
        finally:
            self.connected = False
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await close_client(client)

    async def _resolve(self, client: Client) -> dict[tuple[int, int], Node]:
        """The node of every (device, spec); a node the server does not have is counted on its device."""
        flat = [(vi, si) for vi, v in enumerate(self.views) for si in range(len(v.specs))]
        resolved = await resolve_nodes(client, [self.views[vi].specs[si] for vi, si in flat])
        out: dict[tuple[int, int], Node] = {}
        for key, got in zip(flat, resolved, strict=True):
            if isinstance(got, OpcuaError):
                self._node_failed(key, str(got))
            else:
                out[key] = got
        return out

    def _node_failed(self, key: tuple[int, int], problem: str) -> None:
        """The server does not serve this node (unknown id, unresolved path, item refused): a bad reading, counted."""
        v = self.views[key[0]]
        row: list[Any] = [v.device.id, v.specs[key[1]].node.metric, _now_ms(), None, Quality.BAD]
        self._record(v, [Outcome(row, problem, "exception")])

    async def _subscribe(self, client: Client, nodes: dict[tuple[int, int], Node]) -> None:
        """One subscription with a monitored item per subscribed node (grouped by sampling interval)."""
        s = self.server
        groups: dict[float, list[tuple[int, int]]] = {}
        for vi, v in enumerate(self.views):
            for si in v.subscribed:
                if (vi, si) in nodes:
                    iv = v.specs[si].node.sampling_interval_ms
                    groups.setdefault(s.sampling_interval_ms if iv is None else iv, []).append((vi, si))
        if not groups:
            return
        handler = _Handler(self)
        for keys in groups.values():
            for k in keys:
                handler.by_node.setdefault(nodes[k].nodeid.to_string(), []).append(k)
        try:
            sub = await client.create_subscription(s.publishing_interval_ms, handler)
            for interval, keys in groups.items():
                handles = await sub.subscribe_data_change(
                    [nodes[k] for k in keys], sampling_interval=ua.Double(interval)
                )
                for k, h in zip(keys, handles, strict=True):
                    if isinstance(h, ua.StatusCode):
                        address = self.views[k[0]].specs[k[1]].node.address
                        self._node_failed(k, f"{address}: monitored item refused ({h.name})")
        except OpcuaError:
            raise
        except Exception as exc:
            raise classify(exc, "create subscription") from None
        self.subscriptions += 1

    # -------------------------------------------------------------- values
    def on_value(self, key: tuple[int, int], dv: ua.DataValue) -> None:
        """A data change of a subscribed node."""
        v = self.views[key[0]]
        spec = v.specs[key[1]]
        value = dv.Value.Value if dv.Value is not None else None
        status = dv.StatusCode.value if dv.StatusCode is not None else 0
        out = self._row(spec, value, status, ts_ms(dv.SourceTimestamp), ts_ms(dv.ServerTimestamp))
        self._live[key] = _Live(value, status, time.monotonic())
        self._record(v, [out])

    def _row(
        self, spec: NodeSpec, value: Any, status: int, source_ms: int | None, server_ms: int | None
    ) -> Outcome:
        return to_row(
            spec,
            value,
            status=status,
            source_ms=source_ms,
            server_ms=server_ms,
            now_ms=_now_ms(),
            max_skew_s=self.server.max_clock_skew_s,
            counters=self.ctx.counters,
        )

    def _record(self, v: _DeviceView, outs: list[Outcome]) -> None:
        """Count one delivery of a device's values (a notification, a poll) and send its rows."""
        st = v.stats
        st.polls += 1
        problems = [o for o in outs if o.problem]
        for o in problems:
            if o.kind == "exception":
                st.exception_errors += 1
            else:
                st.decode_errors += 1
        if problems:
            st.last_error = "; ".join(o.problem or "" for o in problems)
            log.warning("opcua %s (%s): %s", self.server.name, v.device.id, st.last_error)
        if len(problems) < len(outs):
            st.ok += 1
            st.consecutive_failures = 0
            st.last_ok_ms = _now_ms()
        else:
            st.consecutive_failures += 1
        rows = [o.row for o in outs]
        st.readings += len(rows)
        if rows:
            self.ctx.emit(rows)

    async def _poll_loop(self, client: Client, vi: int, nodes: dict[tuple[int, int], Node]) -> None:
        v = self.views[vi]
        interval = v.device.poll_interval_s or self.server.poll_interval_s
        keys = [(vi, si) for si in v.polled if (vi, si) in nodes]
        if not keys:
            return
        loop = asyncio.get_running_loop()
        nxt = loop.time()
        while True:
            start = loop.time()
            v.stats.add_lag(time.monotonic(), max(0.0, start - nxt) * 1000.0)
            t0 = time.perf_counter()
            try:
                dvs = await read_nodes(client, [nodes[k] for k in keys])
            except OpcuaRefused as exc:
                stamp = _now_ms()
                self._record(
                    v,
                    [
                        Outcome(
                            [v.device.id, v.specs[k[1]].node.metric, stamp, None, Quality.BAD],
                            str(exc),
                            "exception",
                        )
                        for k in keys
                    ],
                )
            except OpcuaTransportError as exc:
                self._lost_reason = str(exc)
                if self._lost is not None:
                    self._lost.set()
                return
            else:
                v.stats.last_latency_ms = (time.perf_counter() - t0) * 1000.0
                outs = [
                    self._row(
                        v.specs[k[1]],
                        dv.Value.Value if dv.Value is not None else None,
                        dv.StatusCode.value if dv.StatusCode is not None else 0,
                        ts_ms(dv.SourceTimestamp),
                        ts_ms(dv.ServerTimestamp),
                    )
                    for k, dv in zip(keys, dvs, strict=True)
                ]
                self._record(v, outs)
            nxt += interval
            now = loop.time()
            if nxt <= now:
                v.stats.overruns += 1
                missed = int((now - nxt) // interval) + 1
                v.stats.missed_slots += missed
                nxt += missed * interval
            await asyncio.sleep(nxt - loop.time())

    async def _repeat_loop(self) -> None:
        """Send again a subscribed value that has not changed for `repeat_s` (the subscription vouches for it)."""
        repeat = self.server.repeat_s
        while True:
            await asyncio.sleep(min(1.0, repeat / 4))
            now = time.monotonic()
            due: dict[int, list[Outcome]] = {}
            for key, live in self._live.items():
                if now - live.sent_at >= repeat:
                    live.sent_at = now
                    spec = self.views[key[0]].specs[key[1]]
                    due.setdefault(key[0], []).append(self._row(spec, live.value, live.status, None, None))
            for vi, outs in due.items():
                self._record(self.views[vi], outs)


class _Handler:
    """asyncua's subscription callbacks -> the source (monitored-item handle -> (device, spec))."""

    def __init__(self, source: OpcuaSource) -> None:
        self.source = source
        self.by_node: dict[str, list[tuple[int, int]]] = {}

    def datachange_notification(self, node: Node, val: Any, data: DataChangeNotif) -> None:
        for key in self.by_node.get(node.nodeid.to_string(), []):
            try:
                self.source.on_value(key, data.monitored_item.Value)
            except Exception:  # a bug in one value must not stop the subscription
                log.exception("opcua %s: data change of %s failed", self.source.server.name, node)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        code = ua.StatusCode(status.Status.value) if hasattr(status.Status, "value") else status.Status
        if not code.is_good():
            self.source._lost_reason = f"subscription status {code.name}"
            if self.source._lost is not None:
                self.source._lost.set()


def build(cfg: OpcuaKeys, ctx: SourceContext) -> list[Source]:
    """One source per `opcua` entry (server connection)."""
    return [OpcuaSource(s, ctx) for s in cfg.opcua]


def summary(cfg: OpcuaKeys) -> str:
    return f"{len(cfg.opcua)} OPC UA server(s), {sum(len(s.devices) for s in cfg.opcua)} device(s)"


async def check(cfg: OpcuaKeys, wait_s: float) -> list[CheckResult]:
    """`parkpulse-gateway check`: every server connected once, every node read once (servers concurrently)."""
    out: list[CheckResult] = []
    for part in await asyncio.gather(*(_check_server(s) for s in cfg.opcua)):
        out.extend(part)
    return out


async def _check_server(s: OpcuaServer) -> list[CheckResult]:
    units = {m.name: m.unit for m in load_catalogue().metrics}
    views = _specs(s)
    t0 = time.perf_counter()
    try:
        client = await open_client(s)
    except OpcuaError as exc:
        return [CheckResult(v.device.id, str(exc)) for v in views]
    results: list[CheckResult] = []
    try:
        for v in views:
            results.append(await _check_device(client, s, v, units, t0))
    finally:
        await close_client(client)
    return results


async def _check_device(
    client: Client, s: OpcuaServer, v: _DeviceView, units: dict[str, str], t0: float
) -> CheckResult:
    try:
        resolved = await resolve_nodes(client, v.specs)
        found = [(sp, n) for sp, n in zip(v.specs, resolved, strict=True) if not isinstance(n, OpcuaError)]
        missing = [str(n) for n in resolved if isinstance(n, OpcuaError)]
        dvs = await read_nodes(client, [n for _, n in found]) if found else []
    except OpcuaError as exc:
        return CheckResult(v.device.id, str(exc), (time.perf_counter() - t0) * 1000)
    r = CheckResult(v.device.id, "; ".join(missing) or None, (time.perf_counter() - t0) * 1000)
    for (sp, _), dv in zip(found, dvs, strict=True):
        o = to_row(
            sp,
            dv.Value.Value if dv.Value is not None else None,
            status=dv.StatusCode.value if dv.StatusCode is not None else 0,
            source_ms=ts_ms(dv.SourceTimestamp),
            server_ms=ts_ms(dv.ServerTimestamp),
            now_ms=_now_ms(),
            max_skew_s=s.max_clock_skew_s,
            counters=None,
        )
        r.rows.append((sp.node.metric, o.row[3], units.get(sp.node.metric, ""), o.row[4], None))
    return r
