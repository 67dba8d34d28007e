"""The running gateway: sources → batcher → spool → uplink, plus the local HTTP endpoint.

Lifecycle: `Gateway(cfg)` validates and builds everything (no I/O); `await gw.run()` opens the
spool, starts the uplink and runs every part as a named task in one TaskGroup until the
shutdown event is set; the `finally` block seals the open batch, waits up to `drain_timeout_s`
for outstanding PUBACKs and closes everything. Backpressure: readings wait in memory only up to
`batching.max_readings`; then the batch is sealed into the spool at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import Any

from gateway import __version__
from gateway.config import GatewayConfig
from gateway.counters import CounterState, CounterTracker
from gateway.managed import ManagedController, reconcile
from gateway.sources import Source, SourceContext, build_sources
from gateway.spool import PendingBatch, Spool, SpoolError, Tombstone
from gateway.spool import iso_ms as _iso
from gateway.stats import DeviceStats, percentile
from gateway.uplink import Uplink
from parkpulse.wire import ConfigState, batch_envelope, parse_resend_request

__all__ = ["Gateway"]

log = logging.getLogger("parkpulse.gateway")

STALE_INFLIGHT_S = 45.0
RESEND_QUEUE_MAX = 256  # requested ranges waiting; more are refused (ingest asks again later)
RESEND_CHUNK = 200  # batches read from the spool at a time while answering a request
EXPIRE_INTERVAL_S = 60.0
HEALTH_LAG_WINDOW_S = 300.0  # the status message's poll_lag_ms_p99 covers the polls of the last 5 minutes


class Gateway:
    def __init__(
        self,
        cfg: GatewayConfig,
        *,
        shutdown: asyncio.Event | None = None,
        drain_timeout_s: float = 5.0,
    ) -> None:
        self.cfg = cfg
        self.shutdown = shutdown
        self.drain_timeout_s = drain_timeout_s
        self.counters = CounterTracker()
        self.spool = Spool(
            cfg.spool.path,
            max_bytes=int(cfg.spool.max_mb * 1024 * 1024),
            thin_window_s=cfg.spool.thin_window_s,
            counter_window_s=cfg.spool.counter_window_s,
            keep_acked_s=cfg.spool.keep_acked_s,
            keep_acked_share=cfg.spool.keep_acked_share,
        )
        self._ctx = SourceContext(emit=self._emit, counters=self.counters, flush=self._flush_now)
        self.sources: list[Source] = build_sources(cfg, self._ctx)
        self.local_cfg = cfg
        """The local file; in managed mode `cfg` is what runs (a pushed version merged with it)."""
        self.managed = ManagedController(cfg, self) if cfg.managed and cfg.managed.enabled else None
        self._tg: asyncio.TaskGroup | None = None
        self._source_tasks: dict[int, asyncio.Task[None]] = {}  # id(source) -> its task
        self.applies = 0
        self.config_pushes_ignored = 0
        self.uplink: Uplink | None = None
        self._buf: list[list[Any]] = []
        self._buf_since = 0.0
        self._wake = asyncio.Event()
        self._inflight: dict[int, tuple[int, float]] = {}  # mid -> (seq, published at)
        self._resend_inflight: dict[int, tuple[int, float]] = {}  # re-sent on request: mid -> (seq, at)
        self._resend_q: collections.deque[tuple[int, int]] = collections.deque()
        self._resend_wake = asyncio.Event()
        self.resend_requests: dict[str, int] = dict.fromkeys(
            ("accepted", "invalid", "never_assigned", "duplicate", "queue_full"), 0
        )
        self.resend_batches: dict[str, int] = {"batch": 0, "evicted": 0}
        self._sent_upto = -1
        self._connected_since: float | None = None
        self._tokens = float(cfg.uplink.max_inflight)
        self._tokens_at = time.monotonic()
        self.readings_in = 0
        self.batches_sealed = 0
        self.batches_acked = 0
        self.spool_errors = 0
        self.memory_dropped = 0
        self._pending_gaps: list[dict[str, Any]] = []
        self.started_at = time.time()
        self.http_port: int | None = None
        self.running = False

    # readings in ------------------------------------------------------------------------------
    def _emit(self, rows: list[list[Any]]) -> None:
        if not self._buf:
            self._buf_since = time.monotonic()
        self._buf.extend(rows)
        self.readings_in += len(rows)
        if len(self._buf) >= self.cfg.batching.max_readings:
            self._seal()

    def _flush_now(self) -> bool:
        """Seal the buffered readings into the spool now (a source that must answer "kept"); True when none is left in memory."""
        self._seal()
        return not self._buf

    def _seal(self) -> None:
        """Write the buffered readings to the spool. If the spool cannot be written (disk full,
        read-only), the readings stay in memory up to `batching.queue_readings`; beyond that the
        oldest are dropped and reported as a gap in the next batch that can be written."""
        if not self._buf:
            return
        rows, self._buf = self._buf, []
        max_n = self.cfg.batching.max_readings
        protect = {seq for seq, _ in self._inflight.values()}
        for i in range(0, len(rows), max_n):
            chunk = rows[i : i + max_n]
            gaps, self._pending_gaps = self._pending_gaps, []
            try:
                self.spool.append(
                    chunk, gaps=gaps or None, counters=self.counters.take_dirty(), protect=protect
                )
            except SpoolError as exc:
                self._pending_gaps = gaps
                self.spool_errors += 1
                if self.spool_errors == 1 or self.spool_errors % 100 == 0:
                    log.error(
                        "%s (failure %d); keeping up to %d readings in memory",
                        exc,
                        self.spool_errors,
                        self.cfg.batching.queue_readings,
                    )
                self._buf = rows[i:] + self._buf
                self._shed()
                break
            self.batches_sealed += 1
        self._wake.set()

    def _shed(self) -> None:
        """Bound the in-memory buffer while the spool is unwritable; record what is dropped."""
        cap = self.cfg.batching.queue_readings
        if len(self._buf) <= cap:
            return
        drop, self._buf = self._buf[: len(self._buf) - cap], self._buf[len(self._buf) - cap :]
        spans: dict[tuple[str, str], list[int]] = {}
        for r in drop:
            spans.setdefault((r[0], r[1]), []).append(r[2])
        known = {
            (g["device"], g["metric"]): g for g in self._pending_gaps if g["reason"] == "spool_unwritable"
        }
        for (dev, met), tss in spans.items():
            start, end = _iso(min(tss)), _iso(max(tss))
            g = known.get((dev, met))
            if g is None:
                g = {
                    "device": dev,
                    "metric": met,
                    "start": start,
                    "end": end,
                    "count": 0,
                    "reason": "spool_unwritable",
                }
                self._pending_gaps.append(g)
                known[(dev, met)] = g
            g["start"], g["end"] = min(g["start"], start), max(g["end"], end)
            g["count"] += len(tss)
        self.memory_dropped += len(drop)

    # uplink callbacks (on the loop) ------------------------------------------------------------
    def _on_ack(self, mid: int) -> None:
        ent = self._inflight.pop(mid, None)
        if ent is None:
            if self._resend_inflight.pop(mid, None) is not None:
                self._wake.set()
                self._resend_wake.set()
            return
        self.spool.ack([ent[0]])
        self.batches_acked += 1
        self._wake.set()

    def _on_resend(self, payload: bytes) -> None:
        """A resend request arrived (on the loop): validate it and queue its range."""
        try:
            req = parse_resend_request(payload, self.cfg.gateway.id)
        except ValueError as exc:
            self.resend_requests["invalid"] += 1
            log.warning("resend request ignored: %s", exc)
            return
        last = self.spool.last_seq
        if req.from_seq > last:
            self.resend_requests["never_assigned"] += 1
            log.warning(
                "resend request for seqs %d..%d ignored: the last seq assigned is %d",
                req.from_seq,
                req.to_seq,
                last,
            )
            return
        rng = (req.from_seq, min(req.to_seq, last))
        if any(a <= rng[0] and rng[1] <= b for a, b in self._resend_q):
            self.resend_requests["duplicate"] += 1
            return
        if len(self._resend_q) >= RESEND_QUEUE_MAX:
            self.resend_requests["queue_full"] += 1
            log.warning(
                "resend request for seqs %d..%d refused: %d requests waiting", *rng, len(self._resend_q)
            )
            return
        self.resend_requests["accepted"] += 1
        log.info("platform asks for seqs %d..%d again", *rng)
        self._resend_q.append(rng)
        self._resend_wake.set()

    def _on_config(self, payload: bytes) -> None:
        """A config push arrived (on the loop): the managed controller takes it; a local gateway ignores it."""
        if self.managed is not None:
            self.managed.offer(payload)
            return
        self.config_pushes_ignored += 1
        log.warning(
            "config push ignored (%d bytes): this gateway runs its local file (no `managed` key, or enabled: false)",
            len(payload),
        )

    def _on_connect(self) -> None:
        self._connected_since = time.monotonic()
        self._wake.set()
        self._resend_wake.set()

    def _on_disconnect(self) -> None:
        self._connected_since = None

    # tasks --------------------------------------------------------------------------------------
    async def _flusher(self) -> None:
        age = self.cfg.batching.max_age_s
        while True:
            await asyncio.sleep(min(age / 4, 0.25))
            if self._buf and time.monotonic() - self._buf_since >= age:
                self._seal()

    def _take_token(self) -> float:
        """0 when a batch may go now, else seconds to wait (token bucket: rate, burst max_inflight)."""
        up = self.cfg.uplink
        now = time.monotonic()
        self._tokens = min(
            float(up.max_inflight), self._tokens + (now - self._tokens_at) * up.replay_batches_per_s
        )
        self._tokens_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / up.replay_batches_per_s

    async def _await_token(self) -> None:
        """Wait until the send rate lets one more batch go (normal sending and resends share it)."""
        wait = self._take_token()
        while wait > 0:
            await asyncio.sleep(wait)
            wait = self._take_token()

    def _envelope(self, b: PendingBatch | Tombstone) -> bytes:
        now = int(time.time() * 1000)
        if isinstance(b, Tombstone):  # evicted: no readings, the gap says what was lost
            return batch_envelope(self.cfg.gateway.id, b.seq, now, b"[]", b.gaps_json())
        return batch_envelope(self.cfg.gateway.id, b.seq, now, b.rows, b.gaps or None)

    async def _sender(self) -> None:
        up = self.uplink
        assert up is not None
        limit = self.cfg.uplink.max_inflight
        while True:
            await self._wake.wait()
            self._wake.clear()
            while up.connected and len(self._inflight) + len(self._resend_inflight) < limit:
                batches = self.spool.pending(
                    self._sent_upto, limit - len(self._inflight) - len(self._resend_inflight)
                )
                if not batches:
                    break
                for b in batches:
                    await self._await_token()
                    if b.seq <= self._sent_upto:
                        continue
                    mid = up.publish_batch(self._envelope(b))
                    if mid is None:
                        break
                    self._inflight[mid] = (b.seq, time.monotonic())
                    self._sent_upto = b.seq
                else:
                    continue
                break

    async def _resender(self) -> None:
        """Answer resend requests from the spool, sharing the send rate and the in-flight bound."""
        up = self.uplink
        assert up is not None
        limit = self.cfg.uplink.max_inflight
        while True:
            await self._resend_wake.wait()
            self._resend_wake.clear()
            while self._resend_q:
                a, b = self._resend_q[0]
                items = self.spool.retained(a, b, RESEND_CHUNK)
                for it in items:
                    while not (up.connected and len(self._inflight) + len(self._resend_inflight) < limit):
                        await asyncio.sleep(0.05)
                    await self._await_token()
                    mid = up.publish_batch(self._envelope(it))
                    while mid is None:  # lost the connection in between: wait for it
                        await asyncio.sleep(0.2)
                        mid = up.publish_batch(self._envelope(it)) if up.connected else None
                    self._resend_inflight[mid] = (it.seq, time.monotonic())
                    self.resend_batches["evicted" if isinstance(it, Tombstone) else "batch"] += 1
                if not self._resend_q or self._resend_q[0] != (a, b):
                    continue
                if len(items) < RESEND_CHUNK or items[-1].seq >= b:
                    self._resend_q.popleft()
                    log.info("re-sent what the spool holds of seqs %d..%d (%d batches)", a, b, len(items))
                else:
                    self._resend_q[0] = (items[-1].seq + 1, b)

    async def _watchdog(self) -> None:
        """Re-send batches whose PUBACK never came (e.g. the broker lost its session); expire acked batches."""
        expired_at = time.monotonic()
        while True:
            await asyncio.sleep(5.0)
            if time.monotonic() - expired_at >= EXPIRE_INTERVAL_S:
                expired_at = time.monotonic()
                n = self.spool.expire_acked()
                if n:
                    log.info(
                        "evicted %d acknowledged batches older than %.0f s", n, self.cfg.spool.keep_acked_s
                    )
            stale = [
                m for m, (_, t) in self._resend_inflight.items() if time.monotonic() - t > STALE_INFLIGHT_S
            ]
            for m in stale:  # the platform asks again if it still misses them
                del self._resend_inflight[m]
            since = self._connected_since
            if not self._inflight or since is None or time.monotonic() - since < STALE_INFLIGHT_S:
                continue
            oldest = min(t for _, t in self._inflight.values())
            if time.monotonic() - oldest > STALE_INFLIGHT_S:
                first = min(seq for seq, _ in self._inflight.values())
                log.warning(
                    "%d batches without PUBACK for %.0f s: re-sending from seq %d",
                    len(self._inflight),
                    STALE_INFLIGHT_S,
                    first,
                )
                self._inflight.clear()
                self._sent_upto = first - 1
                self._wake.set()

    async def _status(self) -> None:
        up = self.uplink
        assert up is not None
        while True:
            await asyncio.sleep(self.cfg.uplink.status_interval_s)
            up.publish_status(**self.status_extra())

    async def _wait_shutdown(self) -> None:
        if self.shutdown is None:
            await asyncio.Event().wait()
        else:
            await self.shutdown.wait()
        raise _Shutdown

    # applying a configuration ------------------------------------------------------------------
    def _start_source(self, src: Source, i: int) -> None:
        assert self._tg is not None
        self._source_tasks[id(src)] = self._tg.create_task(src.run(), name=f"source:{src.name}:{i}")

    async def apply_config(self, cfg: GatewayConfig, stop_timeout_s: float = 10.0) -> None:
        """Run `cfg` without a restart: sources built the same as running ones keep running (their
        devices keep polling, their counters go on); a polling link built the same with other
        devices takes them in place (its unchanged devices keep polling, removed ones stop after
        their poll under way, added ones start); the others are stopped, then the new ones
        started. The spool, the uplink and the sequence numbers are untouched."""
        built = build_sources(cfg, self._ctx)
        plan = reconcile(self.sources, built)
        stopping = [t for src in plan.stop if (t := self._source_tasks.pop(id(src), None)) is not None]
        for t in stopping:
            t.cancel()
        for upd in plan.update:
            stopping += upd.apply()
        if stopping:
            _done, pending = await asyncio.wait(stopping, timeout=stop_timeout_s)
            if pending:
                log.warning(
                    "%d source(s) or device(s) did not stop within %.0f s", len(pending), stop_timeout_s
                )
        self.cfg = cfg
        self.sources = plan.sources
        if self._tg is not None:
            for src in plan.start:
                self._start_source(src, self.sources.index(src))
        self.applies += 1
        log.info(
            "configuration applied: %d source(s) kept running, %d updated in place (%d device(s) kept), "
            "%d stopped, %d started",
            len(plan.keep),
            len(plan.update),
            sum(len(u.same) for u in plan.update),
            len(plan.stop),
            len(plan.start),
        )

    def broker_connected(self) -> bool:
        return bool(self.uplink and self.uplink.connected)

    def announce(self) -> None:
        """Re-publish the retained status now (the config state changed)."""
        if self.uplink is not None:
            self.uplink.publish_status(**self.status_extra())

    def config_state(self) -> ConfigState:
        return self.managed.config_state() if self.managed is not None else ConfigState(mode="local")

    # public --------------------------------------------------------------------------------------
    def device_stats(self) -> list[DeviceStats]:
        return [s for src in self.sources for s in src.stats()]

    def status_extra(self) -> dict[str, Any]:
        since = time.monotonic() - HEALTH_LAG_WINDOW_S
        stats = self.device_stats()
        return {
            "devices": [s.device for s in stats],
            "device_health": {s.device: s.wire_health(since) for s in stats},
            "spool_depth": self.spool.depth,
            "last_seq": self.spool.last_seq if self.spool.last_seq >= 0 else None,
            "config": self.config_state().model_dump(exclude_none=True),
        }

    def health(self, lag_window_s: float | None = None) -> dict[str, Any]:
        """Health summary; the poll-lag percentile covers the last `lag_window_s` seconds (default: recent polls)."""
        stats = self.device_stats()
        failing = [s.device for s in stats if s.state == "failing"]
        if lag_window_s is None:
            lags = [x for s in stats for x in s.lags_ms]
        else:
            since = time.monotonic() - lag_window_s
            lags = [x for s in stats for x in s.recent_lags(since)]
        connected = bool(self.uplink and self.uplink.connected)
        status = "ok" if connected and not failing else "degraded"
        if stats and len(failing) == len(stats):
            status = "failing"
        return {
            "status": status,
            "gateway": self.cfg.gateway.id,
            "version": __version__,
            "uptime_s": round(time.time() - self.started_at, 1),
            "uplink_connected": connected,
            "spool_depth": self.spool.depth,
            "spool_bytes": self.spool.bytes,
            "spool_dropped_readings": self.spool.dropped_readings,
            "spool_errors": self.spool_errors,
            "memory_dropped_readings": self.memory_dropped,
            "last_seq": self.spool.last_seq,
            "spool_acked_batches": self.spool.acked,
            "spool_evicted_batches": self.spool.evicted,
            "resend_requests": dict(self.resend_requests),
            "resend_batches": dict(self.resend_batches),
            "inflight": len(self._inflight),
            "readings_total": self.readings_in,
            "devices_total": len(stats),
            "devices_failing": failing,
            "poll_lag_p99_ms": percentile(lags, 99),
            "poll_lag_samples": len(lags),
            "overruns": sum(s.overruns for s in stats),
            "devices": [s.as_dict() for s in stats],
            "sources": self.source_details(),
            "config": self.config_state().model_dump(exclude_none=True),
        }

    def source_details(self) -> dict[str, Any]:
        """Per source that has more to say than its devices' stats (`status()`: a receiver's
        connections, counts and dead letters, say), by source name."""
        out: dict[str, Any] = {}
        for src in self.sources:
            status = getattr(src, "status", None)
            if callable(status):
                out[src.name] = status()
        return out

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        if self.managed is not None:  # the last applied version runs before the broker is reachable
            cfg = self.managed.boot()
            if cfg is not self.cfg:
                self.cfg = cfg
                self.sources = build_sources(cfg, self._ctx)
        self.spool.open()
        self._sent_upto = -1
        self.counters.state = {k: CounterState(v, t) for k, (v, t) in self.spool.load_counters().items()}
        up = Uplink(
            self.cfg,
            loop,
            on_ack=self._on_ack,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            on_resend=self._on_resend,
            on_config=self._on_config,
            version=__version__,
        )
        up.status_extra = self.status_extra
        self.uplink = up
        http = None
        if self.cfg.http.listen:
            from gateway.http import serve

            http = await serve(self, self.cfg.http.listen)
            self.http_port = http.sockets[0].getsockname()[1]
        up.start()
        self.running = True
        log.info(
            "gateway %s running: %d devices, spool %s (depth %d, last seq %d)",
            self.cfg.gateway.id,
            len(self.device_stats()),
            self.spool.path,
            self.spool.depth,
            self.spool.last_seq,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for i, src in enumerate(self.sources):
                    self._start_source(src, i)
                if self.managed is not None:
                    tg.create_task(self.managed.run(), name="managed-config")
                tg.create_task(self._flusher(), name="batcher")
                tg.create_task(self._sender(), name="sender")
                tg.create_task(self._resender(), name="resender")
                tg.create_task(self._watchdog(), name="inflight-watchdog")
                tg.create_task(self._status(), name="status")
                tg.create_task(self._wait_shutdown(), name="shutdown")
        except* _Shutdown:
            log.info("shutting down")
        finally:
            self.running = False
            self._tg = None
            self._source_tasks.clear()
            await self._drain()
            if http is not None:
                http.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(http.wait_closed(), 2.0)
            up.stop()
            self.spool.close()

    async def _drain(self) -> None:
        try:
            self._seal()
        except Exception:
            log.exception("could not seal the last batch")
        deadline = time.monotonic() + self.drain_timeout_s
        up = self.uplink
        if up is None or not up.connected:
            return
        sender = asyncio.create_task(self._sender(), name="drain-sender")
        self._wake.set()
        try:
            while (
                time.monotonic() < deadline
                and up.connected
                and (self._inflight or self.spool.depth or self._resend_inflight)
            ):
                await asyncio.sleep(0.05)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender


class _Shutdown(Exception):
    pass
