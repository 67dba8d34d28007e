"""The ingest service: MQTT → decode → one transaction per flush → ack after commit.

Stages (each a named task in one TaskGroup; the blocking ones run in worker threads):
  mqtt reader (paho network thread) → byte-bounded queue → pipeline (decode, map, build the
  binary COPY segments, group into flushes) → hand-off of one flush → writer (transaction,
  commit, then ack) ; maintenance (rollups, pruning, resend requests for open seq gaps) ;
  shutdown watcher (drain on the trigger).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import queue
import sys
import threading
import time
from types import TracebackType
from typing import Any

import psycopg

from ingest._metrics import HealthServer, IngestMetrics
from ingest._mqtt import MessageQueue, MqttReceiver
from ingest._prepare import Message, Prepared, prepare
from ingest._registry import RegistryCache, RegistryData, load_registry
from ingest._resend import RESEND_LOCK_KEY, OpenGap, ResendScheduler
from ingest._store import FlushResult, Store, is_transient
from ingest.settings import IngestSettings
from parkpulse.db import RollupLag, redact, refresh_rollups, rollup_lag, standbys
from parkpulse.errors import ParkPulseError
from parkpulse.wire import resend_request_payload, resend_topic

__all__ = ["IngestError", "IngestService"]

log = logging.getLogger("parkpulse.ingest")


class IngestError(ParkPulseError):
    """The ingest service cannot start or had to stop."""


class _Abandon(Exception):
    """Raised inside the worker threads when the graceful timeout is over."""


_END = object()

# Errors after which the writer opens a new connection instead of retrying on the same one: a lost
# connection, and a server that became read-only (a demoted primary under a multi-host URL with
# target_session_attrs=read-write: only a new connection moves to the node that accepts writes).
_RECONNECT_ON = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.ReadOnlySqlTransaction,
)


class IngestService:
    """`async with IngestService(settings) as svc: await svc.run()`; `svc.shutdown.set()` drains and stops.

    The shutdown trigger is injectable (pass your own asyncio.Event).
    """

    def __init__(
        self, settings: IngestSettings | None = None, *, shutdown: asyncio.Event | None = None
    ) -> None:
        self.settings = s = settings or IngestSettings()
        self.shutdown = shutdown or asyncio.Event()
        self.metrics = IngestMetrics()
        self._queue = MessageQueue(s.queue_max_bytes)
        self._flushes: queue.Queue[object] = queue.Queue(maxsize=1)
        self._abandon = threading.Event()
        self._fatal: BaseException | None = None
        self._unacked = 0
        self._unacked_lock = threading.Lock()
        self.totals = FlushResult()
        self.mqtt = MqttReceiver(
            s.mqtt_url,
            s.client_id,
            s.group,
            s.park,
            session_expiry_s=s.session_expiry_s,
            receive_maximum=s.receive_maximum,
            keepalive_s=s.keepalive_s,
            reconnect=(s.reconnect_min_s, s.reconnect_max_s),
            on_message=self._on_message,
            on_state=self._mqtt_state,
        )
        self.store = Store(s.database_url, f"parkpulse-ingest {s.client_id}"[:63], s.seq_from_first_seen)
        self._cache_conn: psycopg.Connection | None = None
        self.cache = RegistryCache(
            self._load_registry,
            s.cache_refresh_s,
            s.cache_miss_refresh_s,
            on_refresh=self.metrics.cache_refreshes.inc,
        )
        self.http: HealthServer | None = None
        self._db_ok = False
        self._last_commit = 0.0
        self._busy_since = 0.0  # when the count of unacknowledged messages last rose from zero
        self._rollup_lag: RollupLag | None = None
        self._session_empty = False
        self.resend = ResendScheduler(
            delay_s=s.resend_delay_s,
            retry_min_s=s.resend_retry_min_s,
            retry_max_s=s.resend_retry_max_s,
            max_attempts=s.resend_max_attempts,
            max_batches=s.resend_max_batches,
        )
        self._gw_where: dict[str, tuple[str, str]] = {}  # gateway → (park, firm), from the topics seen
        self._resend_conn: psycopg.Connection | None = None
        self._resend_leader = False
        self._resend_gave_up_counted = 0

    # -- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> IngestService:
        s = self.settings
        # The writer thread waits on the database socket most of the time; when it wakes it must
        # get the GIL back from the decoder quickly, or COPY stalls (default interval: 5 ms).
        sys.setswitchinterval(s.gil_switch_interval_s)
        try:
            self.http = HealthServer(s.http_host, s.http_port, self.metrics, self.health).start()
        except OSError as exc:
            raise IngestError(
                f"http_port: cannot listen on {s.http_host}:{s.http_port} ({exc.strerror}); "
                "set PARKPULSE_INGEST_HTTP_PORT (0 = any free port)"
            ) from None
        await asyncio.to_thread(self._first_registry_load)
        self.mqtt.start()
        log.info(
            "ingest %s: database %s, broker %s, metrics on http://%s:%d/metrics",
            s.client_id,
            redact(s.database_url),
            self.mqtt.target.redacted(),
            s.http_host,
            self.http.port,
        )
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._abandon.set()
            self._queue.close()
        finally:
            self.mqtt.stop(end_session=self._session_empty and self._unacked == 0)
            self.store.close()
            if self._cache_conn is not None:
                self._cache_conn.close()
            self._drop_resend_conn()
            if self.http is not None:
                self.http.stop()

    async def run(self) -> None:
        """Run until the shutdown trigger, then drain (bounded by graceful_timeout_s)."""
        async with asyncio.TaskGroup() as tg:
            pipeline = tg.create_task(
                asyncio.to_thread(self._guard, self._pipeline_loop), name="ingest-pipeline"
            )
            writer = tg.create_task(asyncio.to_thread(self._guard, self._writer_loop), name="ingest-writer")
            tg.create_task(self._maintenance(), name="ingest-maintenance")
            tg.create_task(self._watch(pipeline, writer), name="ingest-shutdown")
        if self._fatal is not None:
            raise IngestError(f"ingest stopped: {self._fatal}") from self._fatal

    async def _watch(self, *workers: asyncio.Task[None]) -> None:
        stop = asyncio.create_task(self.shutdown.wait(), name="ingest-shutdown-trigger")
        done, _ = await asyncio.wait([stop, *workers], return_when=asyncio.FIRST_COMPLETED)
        self.shutdown.set()
        if stop not in done:
            stop.cancel()
        deadline = time.monotonic() + self.settings.graceful_timeout_s
        if self.settings.leave_group_on_exit and self._fatal is None:
            await self._leave_group(deadline)
        log.info("draining: committing what was received (at most %.0f s)", self.settings.graceful_timeout_s)
        self._queue.put_control()  # messages behind this marker stay unacked: the broker redelivers them
        try:
            async with asyncio.timeout(max(1.0, deadline - time.monotonic())):
                await asyncio.gather(*workers, return_exceptions=True)
        except TimeoutError:
            log.warning("graceful timeout: leaving the rest unacknowledged for redelivery")
            self._abandon.set()
            self._queue.close()

    async def _leave_group(self, deadline: float) -> None:
        """Scale-in: stop new assignments, take in what the broker still holds for us, commit and ack it
        all, so the session can be ended without leaving messages in it."""
        left = await asyncio.to_thread(self.mqtt.leave_group)
        log.info(
            "left the shared group (%s); taking in what the broker still holds for this client",
            "acknowledged" if left else "no answer",
        )
        while time.monotonic() < deadline - 1.0:
            quiet = time.monotonic() - self.mqtt.last_message_at > 1.0
            if quiet and self._unacked == 0:
                self._session_empty = True
                return
            await asyncio.sleep(0.1)
        log.warning("could not empty the session in time: it is kept, restart with the same client id")

    def _guard(self, fn: Any) -> None:
        try:
            fn()
        except _Abandon:
            pass
        except BaseException as exc:  # a bug, not bad input: stop everything rather than hang
            log.exception("ingest worker failed")
            self._fatal = exc
            self._abandon.set()
            self._queue.close()

    # -- mqtt → queue --------------------------------------------------------------------------
    def _mqtt_state(self, up: bool) -> None:
        self.metrics.mqtt_connected.set(1 if up else 0)
        if up:
            self.metrics.mqtt_connects.inc()

    def _on_message(self, m: Message) -> None:
        with self._unacked_lock:
            if self._unacked == 0:
                self._busy_since = time.time()
            self._unacked += 1
        is_status = m.topic.endswith("/status")
        self.metrics.messages.labels("status" if is_status else "data").inc()
        parts = m.topic.split("/")
        if len(parts) == 6 and parts[4] not in self._gw_where:  # where to send its resend requests
            self._gw_where[parts[4]] = (parts[2], parts[3])
        if m.dup:
            self.metrics.redeliveries.inc()
        self._queue.put(m)
        self.metrics.queue_depth.set(len(self._queue))
        self.metrics.queue_bytes.set(self._queue.nbytes)

    # -- pipeline: decode and group into flushes -------------------------------------------------
    def _pipeline_loop(self) -> None:
        s = self.settings
        max_future_ms = int(s.max_future_s * 1000)
        pending: list[Prepared] = []
        n = 0
        first = 0.0
        while True:
            if self._abandon.is_set():
                raise _Abandon
            wait = 0.2 if not pending else max(0.0, first + s.flush_interval_s - time.monotonic())
            m = self._queue.get(wait)
            if m is None:  # drain marker
                if pending:
                    self._handoff(pending)
                self._handoff(_END)
                return
            if m is not False:
                assert isinstance(m, Message)
                p = self._prepare(m, max_future_ms)
                if not pending:
                    first = time.monotonic()
                pending.append(p)
                n += p.n
                self.metrics.queue_depth.set(len(self._queue))
                self.metrics.queue_bytes.set(self._queue.nbytes)
            if pending and (
                n >= s.flush_max_readings
                or len(pending) >= s.flush_max_messages
                or time.monotonic() - first >= s.flush_interval_s
            ):
                self._handoff(pending)
                pending, n = [], 0
            elif not pending:
                self._maybe_refresh_cache()

    def _prepare(self, m: Message, max_future_ms: int) -> Prepared:
        delay = self.settings.db_retry_min_s
        while True:
            try:
                return prepare(m, self.cache, max_future_ms)
            except psycopg.Error as exc:  # the registry could not be read: retry, never dead-letter
                self._db_ok = False
                self.metrics.db_ok.set(0)
                self._drop_cache_conn()
                log.warning("registry lookup failed (%s); retrying in %.1f s", str(exc).strip()[:200], delay)
                if self._abandon.wait(delay):
                    raise _Abandon from None
                delay = min(delay * 2, self.settings.db_retry_max_s)
            except Exception as exc:  # a bug met by odd input: keep the message (dead letter), keep running
                log.exception("could not decode a message on %s", m.topic)
                p = Prepared(m.topic, m.mid, m.qos, m.gen, "dead", payload=m.payload)
                p.dead.append(
                    (m.topic, None, None, None, f"internal error while decoding: {exc!r:.300}", m.payload)
                )
                return p

    def _maybe_refresh_cache(self) -> None:
        try:
            self.cache.maybe_refresh()
        except psycopg.Error as exc:
            self._drop_cache_conn()
            self.cache.loaded_at = time.monotonic() - self.cache.refresh_s + 5.0  # try again in 5 s
            log.warning("registry refresh failed: %s", str(exc).strip()[:200])

    def _handoff(self, item: object) -> None:
        while True:
            try:
                self._flushes.put(item, timeout=0.2)
                return
            except queue.Full:
                if self._abandon.is_set():
                    raise _Abandon from None

    def _load_registry(self) -> RegistryData:
        if self._cache_conn is None or self._cache_conn.closed or self._cache_conn.broken:
            self._drop_cache_conn()
            self._cache_conn = psycopg.connect(
                self.settings.database_url,
                connect_timeout=5,
                application_name=f"parkpulse-ingest-registry {self.settings.client_id}"[:63],
            )
        return load_registry(self._cache_conn, self.settings.history_before_registration_days * 86_400)

    def _drop_cache_conn(self) -> None:
        if self._cache_conn is not None:
            with contextlib.suppress(Exception):
                self._cache_conn.close()
            self._cache_conn = None

    def _first_registry_load(self) -> None:
        try:
            self.cache.refresh()
            self._db_ok = True
            self.metrics.db_ok.set(1)
        except psycopg.Error as exc:  # the database may be down at start: keep going, retry on use
            self._drop_cache_conn()
            hint = " (run `parkpulse db migrate`)" if isinstance(exc, psycopg.errors.UndefinedTable) else ""
            log.warning("registry not loaded at start (%s)%s; will retry", str(exc).strip()[:200], hint)

    # -- writer: one transaction per flush, then ack --------------------------------------------
    def _writer_loop(self) -> None:
        while True:
            try:
                item = self._flushes.get(timeout=0.2)
            except queue.Empty:
                if self._abandon.is_set():
                    raise _Abandon from None
                continue
            if item is _END:
                return
            assert isinstance(item, list)
            self._commit(item)

    def _commit(self, items: list[Prepared]) -> None:
        """Commit a flush, retrying while the database is away. A flush the database refuses is split;
        a single refused message becomes a dead letter, then a minimal one (topic, size, sha256,
        reason), and if even that is refused it is acknowledged and counted as lost: one message
        never holds up the stream."""
        delay = self.settings.db_retry_min_s
        stage = "data"  # data → dead letter → minimal dead letter
        while True:
            if self._abandon.is_set():
                raise _Abandon
            t0 = time.monotonic()
            try:
                res = self.store.write(items)
            except Exception as exc:
                if not isinstance(
                    exc, psycopg.Error
                ):  # a bug met by odd content: isolate it like refused data
                    log.exception("unexpected error writing a flush")
                self._db_ok = isinstance(exc, psycopg.DataError | psycopg.IntegrityError)
                self.metrics.db_ok.set(1 if self._db_ok else 0)
                if isinstance(exc, psycopg.Error) and is_transient(exc):
                    self.metrics.db_errors.labels("transient").inc()
                    log.warning(
                        "database unavailable (%s: %s); retrying in %.1f s, not acknowledging",
                        type(exc).__name__,
                        str(exc).strip()[:200],
                        delay,
                    )
                    if isinstance(exc, _RECONNECT_ON):  # a new connection finds the new primary
                        self.store.close()
                    if self._abandon.wait(delay):
                        raise _Abandon from None
                    delay = min(delay * 2, self.settings.db_retry_max_s)
                    continue
                self.metrics.db_errors.labels("refused").inc()
                if len(items) > 1:
                    log.warning(
                        "database refused a flush (%s); retrying its messages one by one", _short(exc)
                    )
                    for p in items:
                        self._commit([p])
                    return
                if stage == "data":
                    log.error("database refused a message for good, dead-lettering it: %s", _short(exc))
                    items, stage = [_refused(items[0], exc)], "dead letter"
                    continue
                if stage == "dead letter":
                    log.error(
                        "database refused the dead letter of %s too (%s); storing a minimal one",
                        items[0].topic,
                        _short(exc),
                    )
                    items, stage = [_minimal(items[0], exc)], "minimal"
                    self.metrics.dead_letters_minimal.inc()
                    continue
                log.error(
                    "database refused even the minimal dead letter of %s (%d bytes, sha256 %s): %s; "
                    "acknowledging it so the stream goes on",
                    items[0].topic,
                    len(items[0].payload),
                    hashlib.sha256(items[0].payload).hexdigest(),
                    _short(exc),
                )
                self.metrics.dead_letters_lost.inc()
                self._after_commit(items, FlushResult())
                return
            res.seconds = time.monotonic() - t0
            self._after_commit(items, res)
            return

    def _after_commit(self, items: list[Prepared], res: FlushResult) -> None:
        m = self.metrics
        self._db_ok = True
        self._last_commit = time.time()
        m.db_ok.set(1)
        m.last_commit.set(self._last_commit)
        m.commit_seconds.observe(res.seconds)
        m.flush_readings.observe(res.readings)
        m.readings.inc(res.readings)
        m.batches.inc(res.batches)
        m.duplicate_batches.inc(res.duplicate_batches)
        m.duplicate_rows.inc(res.duplicate_rows)
        if res.dead_letters:
            m.dead_letters.labels("reading").inc(res.dead_letters - res.dead_batch)
            m.dead_letters.labels("message").inc(res.dead_batch)
        m.seq_gaps.inc(res.gaps_detected)
        m.seq_gap_batches.inc(res.gap_batches)
        m.seq_gaps_filled.inc(res.gap_batches_filled)
        t = self.totals
        t.readings += res.readings
        t.batches += res.batches
        t.duplicate_batches += res.duplicate_batches
        t.duplicate_rows += res.duplicate_rows
        t.dead_letters += res.dead_letters
        acked = 0
        for p in items:
            if self.mqtt.ack(p.mid, p.qos, p.gen):
                acked += 1
        with self._unacked_lock:
            self._unacked -= len(items)
            m.unacked.set(self._unacked)

    # -- maintenance -----------------------------------------------------------------------------
    async def _maintenance(self) -> None:
        s = self.settings
        next_rollup = time.monotonic() + (s.rollup_interval_s or 1e18)
        next_prune = time.monotonic() + s.prune_interval_s
        next_gauge = 0.0
        next_resend = time.monotonic() + s.resend_interval_s
        while not self.shutdown.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self.shutdown.wait()
            now = time.monotonic()
            if now >= next_gauge:
                next_gauge = now + s.gaps_gauge_interval_s
                await asyncio.to_thread(self._open_gaps_gauge)
            if s.resend_max_attempts and now >= next_resend:
                next_resend = now + s.resend_interval_s
                await asyncio.to_thread(self._resend_round)
            if s.rollup_interval_s and now >= next_rollup:
                next_rollup = now + s.rollup_interval_s
                await asyncio.to_thread(self._refresh_rollups)
                self.metrics.rollup_runs.inc()
            if now >= next_prune:
                next_prune = now + s.prune_interval_s
                await asyncio.to_thread(
                    self._run_sql,
                    "DELETE FROM ingest_batches b USING gateway_seq g WHERE b.gateway_id = g.gateway_id "
                    f"AND b.seq <= g.contiguous_seq AND b.received_at < now() - interval '{int(s.prune_keep_s)} seconds'",
                    "prune",
                )

    # -- gap fill: resend requests ------------------------------------------------------------------
    def _drop_resend_conn(self) -> None:
        if self._resend_conn is not None:
            with contextlib.suppress(Exception):
                self._resend_conn.close()
        self._resend_conn = None
        self._resend_leader = False

    def _resend_round(self) -> None:
        """Ask gateways for the batches of seq gaps that stayed open (one process per database asks:
        the holder of an advisory lock on its own connection)."""
        if not self.mqtt.connected:
            return
        try:
            if self._resend_conn is None or self._resend_conn.closed or self._resend_conn.broken:
                self._drop_resend_conn()
                self._resend_conn = psycopg.connect(
                    self.settings.database_url,
                    autocommit=True,
                    connect_timeout=5,
                    application_name=f"parkpulse-ingest-resend {self.settings.client_id}"[:63],
                )
            c = self._resend_conn
            if not self._resend_leader:
                row = c.execute(
                    "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (RESEND_LOCK_KEY, self.settings.park)
                ).fetchone()
                self._resend_leader = bool(row and row[0])
                if not self._resend_leader:
                    return
                log.info("this process asks gateways to re-send missing batches")
            rows = c.execute(
                """SELECT s.gateway_id, s.from_seq, s.to_seq, extract(epoch FROM now() - s.detected_at)::float8,
                          f.park_id, g.firm_id
                   FROM seq_gaps s LEFT JOIN gateways g USING (gateway_id) LEFT JOIN firms f USING (firm_id)
                   WHERE s.filled_at IS NULL ORDER BY s.gateway_id, s.from_seq LIMIT 10000"""
            ).fetchall()
            # tail: the gateway's status says every batch up to last_seq was acknowledged by the broker
            # (spool_depth 0), yet the last ones never arrived and no later batch revealed the gap
            rows += c.execute(
                """SELECT t.gateway_id, q.max_seq + 1, t.last_seq, extract(epoch FROM now() - t.last_seen)::float8,
                          f.park_id, g.firm_id
                   FROM gateway_status t JOIN gateway_seq q USING (gateway_id)
                        LEFT JOIN gateways g USING (gateway_id) LEFT JOIN firms f USING (firm_id)
                   WHERE t.spool_depth = 0 AND t.last_seq > q.max_seq"""
            ).fetchall()
        except psycopg.Error as exc:
            log.warning("resend check failed: %s", str(exc).strip()[:200])
            self._drop_resend_conn()
            return
        where = {gw: (park, firm) for gw, _, _, _, park, firm in rows if park and firm}
        where.update(self._gw_where)
        gaps = [OpenGap(gw, int(a), int(b), float(age)) for gw, a, b, age, _, _ in rows]
        park = self.settings.park
        for req in self.resend.due(gaps):
            loc = where.get(req.gateway)
            if loc is None or (park != "+" and loc[0] != park):
                continue
            try:
                topic = resend_topic(loc[0], loc[1], req.gateway)
            except ValueError:
                continue
            if self.mqtt.publish(topic, resend_request_payload(req.gateway, req.from_seq, req.to_seq)):
                self.metrics.resend_requests.inc()
                log.info(
                    "asked gateway %s to re-send seqs %d..%d (attempt %d)",
                    req.gateway,
                    req.from_seq,
                    req.to_seq,
                    req.attempt,
                )
        if self.resend.gave_up > self._resend_gave_up_counted:
            self.metrics.resend_gave_up.inc(self.resend.gave_up - self._resend_gave_up_counted)
            self._resend_gave_up_counted = self.resend.gave_up

    def _open_gaps_gauge(self) -> None:
        try:
            with psycopg.connect(
                self.settings.database_url,
                autocommit=True,
                connect_timeout=5,
                application_name=f"parkpulse-ingest-maint {self.settings.client_id}"[:63],
            ) as c:
                row = c.execute(
                    "SELECT count(*), coalesce(sum(to_seq - from_seq + 1), 0) FROM seq_gaps "
                    "WHERE filled_at IS NULL"
                ).fetchone()
        except psycopg.Error:
            return
        if row:
            self.metrics.open_gaps.set(row[0])
            self.metrics.open_gap_batches.set(row[1])

    def _refresh_rollups(self) -> None:
        """One bounded round of the shared refresher (both storage paths), then the lag gauges.
        A round that worked off its full bound is followed by another, up to rollup_max_rounds."""
        s = self.settings
        try:
            with psycopg.connect(
                s.database_url,
                autocommit=True,
                connect_timeout=5,
                application_name=f"parkpulse-ingest-rollups {s.client_id}"[:63],
            ) as c:
                for _ in range(s.rollup_max_rounds):
                    n = refresh_rollups(c, max_buckets=s.rollup_max_buckets)
                    self.metrics.rollup_buckets.inc(n)
                    if n < s.rollup_max_buckets or self.shutdown.is_set():
                        break
                lag = rollup_lag(c)
                replicas = standbys(c)
        except psycopg.Error as exc:
            log.warning("rollup refresh failed: %s", str(exc).strip()[:200])
            return
        self.metrics.replica_lag.clear()
        self.metrics.replica_lag_bytes.clear()
        for sb in replicas:
            self.metrics.replica_lag.labels(sb.name).set(sb.replay_lag_s or 0.0)
            self.metrics.replica_lag_bytes.labels(sb.name).set(sb.replay_lag_bytes or 0)
        self.metrics.rollup_lag.set(lag.oldest_mark_age_s or 0.0)
        self.metrics.rollup_dirty.set(lag.dirty_buckets)
        self._rollup_lag = lag

    def _run_sql(self, sql: str, what: str) -> None:
        try:
            with psycopg.connect(
                self.settings.database_url,
                autocommit=True,
                connect_timeout=5,
                application_name=f"parkpulse-ingest-maint {self.settings.client_id}"[:63],
            ) as c:
                c.execute(sql.encode())
        except psycopg.Error as exc:
            log.warning("%s failed: %s", what, str(exc).strip()[:200])

    # -- health ----------------------------------------------------------------------------------
    def stalled_for(self) -> float:
        """Seconds messages have been waiting without any commit (0 when nothing waits)."""
        if self._unacked <= 0:
            return 0.0
        return max(0.0, time.time() - max(self._last_commit, self._busy_since))

    def health(self) -> dict[str, Any]:
        up = self.mqtt.connected
        status = "ok" if up and self._db_ok else "degraded"
        stalled = self.stalled_for()
        if stalled > self.settings.stall_after_s:
            status = "failing"
        if self._fatal is not None:
            status = "down"
        return {
            "status": status,
            "stalled_s": round(stalled, 3),
            "rollup_lag_s": None
            if self._rollup_lag is None
            else round(self._rollup_lag.oldest_mark_age_s or 0.0, 1),
            "mqtt_connected": up,
            "subscribed": self.mqtt.subscribed,
            "database_ok": self._db_ok,
            "queue_depth": len(self._queue),
            "unacked": self._unacked,
            "last_commit_age_s": round(time.time() - self._last_commit, 3) if self._last_commit else None,
            "readings_stored": self.totals.readings,
            "client_id": self.settings.client_id,
        }


def _short(exc: BaseException) -> str:
    return (str(exc).strip().replace("\x00", "\\x00") or type(exc).__name__)[:300]


def _refused(p: Prepared, exc: BaseException) -> Prepared:
    """The whole message as one dead letter when the database refuses its content."""
    out = Prepared(p.topic, p.mid, p.qos, p.gen, "dead", p.gateway, p.seq)
    what = (
        "database refused the batch" if isinstance(exc, psycopg.Error) else "internal error storing the batch"
    )
    out.dead.append((p.topic, p.gateway, p.seq, None, f"{what}: {_short(exc)}", p.payload))
    return out


def _minimal(p: Prepared, exc: BaseException) -> Prepared:
    """The least that can describe a message: its topic, the payload's size and sha256 (the store
    writes both from `digest_of`), and why; no payload, no gateway or seq that could be refused again."""
    out = Prepared(p.topic, p.mid, p.qos, p.gen, "dead")
    out.digest_of = p.dead[0][5] if p.dead else p.payload
    first = p.dead[0][4] if p.dead else "refused"
    reason = f"{first[:200]}; its dead letter was refused too: {_short(exc)}"
    topic = "".join(ch for ch in p.topic if ch.isprintable())[:300]
    out.dead.append((topic, None, None, "payload", reason.replace("\x00", ""), b""))
    return out
