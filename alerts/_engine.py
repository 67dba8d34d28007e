"""The alert engine service: MQTT stream + periodic database evaluation → alerts, MQTT
notifications and webhooks.

Tasks (one asyncio.TaskGroup, each supervised and restarted after an error):
  alerts-mqtt-in     subscribe `$share/{group}/pp/v1/{park}/+/+/data` and the status topics → queue
  alerts-evaluate    queue → stream rules → alerts table
  alerts-periodic    silence, seq gaps, reported gaps, timed clears; hourly emissions
  alerts-publish     alert_events (LISTEN pp_alerts + cursor) → MQTT events topic and retained current topic
  alerts-webhooks    webhook outbox (LISTEN pp_webhooks) → signed HTTP POSTs
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import aiomqtt
import httpx
import orjson
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from alerts._evaluate import Outcome, StreamEvaluator, render_message
from alerts._http import health_doc, metrics_text, serve_http
from alerts._limits_sync import sync_limits_async
from alerts._periodic import PeriodicEvaluator
from alerts._registry import DeviceRegistry
from alerts._ruleset import RuleSet, load_rules
from alerts._settings import AlertSettings
from alerts._stats import EngineStats
from alerts._tracker import Action, Tracker
from alerts._webhooks import WebhookWorker
from parkpulse.errors import ConfigError, StoreError, WireError
from parkpulse.reconnect import Backoff, retry_async
from parkpulse.settings import parse_mqtt_url
from parkpulse.wire import alerts_topic, decode_batch, parse_topic, shared_data_subscription

__all__ = ["AlertEngine", "EngineStats"]

log = logging.getLogger("parkpulse.alerts")

_CURSOR = "mqtt"
_PUBLISHED_MEMORY = 4096  # events published lately, remembered to skip them after a reconnect

T = TypeVar("T")


class AlertEngine:
    """Validate at init (rules, URLs); connect and run on `async with` / `run()`."""

    def __init__(
        self,
        settings: AlertSettings | None = None,
        rules: RuleSet | None = None,
        *,
        shutdown: asyncio.Event | None = None,
    ) -> None:
        self.settings = settings or AlertSettings()
        self.rules = rules or load_rules(self.settings.rules_file, self.settings.limits_file)
        self.dsn = self.settings.dsn()
        self.mqtt = parse_mqtt_url(self.settings.mqtt())
        self.client_id = self.settings.client_id or f"pp-alerts-{uuid.uuid4().hex[:8]}"
        self.stats = EngineStats()
        self.tracker = Tracker()
        self.registry = DeviceRegistry(self.settings.registry_refresh_s)
        self.stream = StreamEvaluator(self.rules, self.tracker, self.registry)
        self.periodic = PeriodicEvaluator(self.rules, self.tracker, self.settings.park)
        self.webhooks = WebhookWorker(
            timeout_s=self.settings.webhook_timeout_s,
            base_s=self.settings.webhook_backoff_base_s,
            cap_s=self.settings.webhook_backoff_max_s,
            max_age_s=self.settings.webhook_max_age_s,
            batch=self.settings.webhook_batch,
        )
        self._stop = shutdown or asyncio.Event()
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=self.settings.queue_size)
        self._writer: psycopg.AsyncConnection | None = None
        self._write_lock = asyncio.Lock()
        self._last_refresh: dict[tuple[str, str], float] = {}
        # event_id → (alert_id, at) of the events published lately: a publisher restarted after a
        # lost connection re-reads from the stored cursor, which may lag what it already sent
        self._published: dict[int, tuple[int, datetime]] = {}
        self._runner: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()  # set once subscribed to MQTT (the first time)
        self._subscribed = False  # currently subscribed
        self._http: asyncio.Server | None = None
        self.http_port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    async def __aenter__(self) -> AlertEngine:
        try:
            self._writer = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        except psycopg.OperationalError as exc:
            raise StoreError(f"alerts: database unreachable: {str(exc).strip()}") from exc
        try:
            await self._sync_rule_versions(self._writer)
            synced = await sync_limits_async(self._writer, self.rules)
            log.info(
                "alerts: emission limits synced (%d rows, %d new, %d stale removed)",
                synced.rows,
                synced.inserted,
                synced.deleted,
            )
            await self._restore(self._writer)
            await self.registry.load(self._writer)
        except psycopg.errors.UndefinedTable as exc:
            await self._writer.close()
            raise StoreError(
                f"alerts: the database lacks the alert tables ({exc.diag.message_primary}); run `parkpulse db migrate`"
            ) from exc
        except BaseException:
            await self._writer.close()
            raise
        if self.settings.http_port is not None:
            self._http = await serve_http(
                self.settings.http_host,
                self.settings.http_port,
                lambda: health_doc(
                    self.stats,
                    self.ready.is_set() and self._subscribed,
                    self._queue.qsize(),
                    self.settings.queue_size,
                ),
                lambda: metrics_text(self.stats, self._queue.qsize(), len(self.tracker.open_keys())),
            )
            self.http_port = int(self._http.sockets[0].getsockname()[1])
        self._runner = asyncio.create_task(self._main(), name="alerts-engine")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        try:
            if self._runner is not None:
                await self._runner
        finally:
            if self._http is not None:
                self._http.close()
                await self._http.wait_closed()
            if self._writer is not None:
                await self._writer.close()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        async with self:
            await self._stop.wait()

    async def _main(self) -> None:
        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(self._supervise("alerts-mqtt-in", self._mqtt_in), name="alerts-mqtt-in")
            others = [
                tg.create_task(self._supervise(name, fn), name=name)
                for name, fn in (
                    ("alerts-evaluate", self._evaluate_loop),
                    ("alerts-periodic", self._periodic_loop),
                    ("alerts-publish", self._publish_loop),
                    ("alerts-webhooks", self._webhook_loop),
                )
            ]
            await self._stop.wait()
            reader.cancel()
            # drain: the evaluator empties its queue, the publisher sends what is committed
            _, pending = await asyncio.wait(
                others, timeout=self.settings.drain_timeout_s + self.settings.publish_poll_s
            )
            for t in pending:
                t.cancel()

    async def _supervise(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        delay = 0.5
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                await fn()
                return
            except (psycopg.Error, aiomqtt.MqttError, OSError, StoreError) as exc:
                self.stats.errors += 1
                if time.monotonic() - started > 30:
                    delay = 0.5  # it ran fine for a while: start backing off afresh
                log.warning("%s: %s — restarting in %.1f s", name, str(exc).strip()[:300], delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, 5.0)

    # -- startup -----------------------------------------------------------------------------------
    async def _sync_rule_versions(self, conn: psycopg.AsyncConnection) -> None:
        for r in self.rules.rules:
            await conn.execute(
                "INSERT INTO alert_rule_versions (rule_id, version, kind, definition, checksum) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (r.id, r.version, r.kind, orjson.dumps(r.definition, default=str).decode(), r.checksum),
            )
            cur = await conn.execute(
                "SELECT checksum FROM alert_rule_versions WHERE rule_id = %s AND version = %s",
                (r.id, r.version),
            )
            row = await cur.fetchone()
            if row and row[0] != r.checksum:
                raise ConfigError(
                    f"rules.{r.id}.version: rule {r.id} changed but kept version {r.version}; "
                    "bump its version so existing alerts stay explainable"
                )

    async def _restore(self, conn: psycopg.AsyncConnection) -> None:
        cur = await conn.execute(
            "SELECT alert_id, rule_id, subject, extract(epoch FROM observed_at), extract(epoch FROM clear_since) "
            "FROM alerts WHERE state <> 'resolved'"
        )
        for alert_id, rule_id, subject, obs, clear in await cur.fetchall():
            self.tracker.restore(
                (rule_id, subject),
                alert_id,
                float(obs) if obs is not None else None,
                float(clear) if clear is not None else None,
            )

    # -- writing alerts ----------------------------------------------------------------------------
    async def apply(self, outcomes: list[Outcome]) -> None:
        if not outcomes:
            return
        async with self._write_lock:
            for o in outcomes:
                await self._with_writer("alert write", functools.partial(self._apply_one, o=o))

    async def _with_writer(self, what: str, fn: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        """`fn(writer)`, retried with backoff on a new connection after a lost connection or a
        read-only error (a demoted primary) until it goes through or the engine stops. Every write
        here is safe to repeat: pp_alert_fire returns the open alert, pp_alert_clear is a no-op
        on a resolved one."""

        async def op() -> T:
            return await fn(await self._writer_conn())

        return await retry_async(
            op,
            what=f"alerts: {what}",
            backoff=Backoff(0.2, 5.0),
            stop=self._stop,
            on_error=lambda _exc: self._drop_writer(),
        )

    async def _writer_conn(self) -> psycopg.AsyncConnection:
        if self._writer is None or self._writer.closed or self._writer.broken:
            await self._drop_writer()
            self._writer = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        return self._writer

    async def _drop_writer(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await self._writer.close()
            self._writer = None

    async def _apply_one(self, conn: psycopg.AsyncConnection, o: Outcome) -> None:
        st = self.tracker.get(o.key)
        if o.action is Action.CLEAR:
            if st is None or st.alert_id is None:
                return
            # the alert keeps its last breaching value; the value that cleared it goes into the audit row
            detail = {"evidence": o.evidence, "value": o.value}
            await conn.execute(
                "SELECT pp_alert_clear(%s, %s)", (st.alert_id, orjson.dumps(detail, default=str).decode())
            )
            self.tracker.cleared(o.key)
            self._last_refresh.pop(o.key, None)
            self.stats.cleared += 1
            return
        if o.action is Action.REFRESH:
            last = self._last_refresh.get(o.key, 0.0)
            if time.monotonic() - last < self.settings.refresh_interval_s:
                return
        zh, en = render_message(o)
        cur = await conn.execute(
            "SELECT pp_alert_fire(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                o.rule.id,
                o.rule.version,
                o.rule.kind,
                o.rule.severity,
                o.park_id,
                o.firm_id,
                o.gateway_id,
                o.device_id,
                o.metric,
                o.subject,
                o.value,
                o.limit,
                o.unit,
                zh,
                en,
                orjson.dumps(o.evidence, default=str).decode(),
                datetime.fromtimestamp(o.observed_at, UTC),
            ),
        )
        row = await cur.fetchone()
        assert row is not None
        self.tracker.fired(o.key, int(row[0]))
        self._last_refresh[o.key] = time.monotonic()
        if o.action is Action.FIRE:
            self.stats.fired += 1
        else:
            self.stats.refreshed += 1

    # -- MQTT in -----------------------------------------------------------------------------------
    def _client(self, suffix: str, persistent: bool = False) -> aiomqtt.Client:
        tls = ssl.create_default_context() if self.mqtt.tls else None
        kw: dict[str, Any] = {}
        if persistent:
            # a fixed client id keeps its session: the broker queues data for it while the engine is down
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = int(self.settings.session_expiry_s)
            kw = {"clean_start": False, "properties": props}
        return aiomqtt.Client(
            self.mqtt.host,
            self.mqtt.port,
            username=self.mqtt.username,
            password=self.mqtt.password,
            identifier=f"{self.client_id}-{suffix}",
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=tls,
            **kw,
        )

    async def _mqtt_in(self) -> None:
        park = self.settings.park
        async with self._client("in", persistent=self.settings.client_id is not None) as client:
            await client.subscribe(shared_data_subscription(self.settings.group, park), qos=1)
            await client.subscribe(f"pp/v1/{park}/+/+/status", qos=1)
            self.ready.set()
            self._subscribed = True
            log.info("alerts: subscribed on %s as group %s", self.mqtt.redacted(), self.settings.group)
            try:
                async for msg in client.messages:
                    payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
                    await self._queue.put((msg.topic.value, payload))  # waits when full: backpressure
            finally:
                self._subscribed = False

    async def _evaluate_loop(self) -> None:
        while True:
            if self._stop.is_set() and self._queue.empty():
                return
            try:
                topic, payload = await asyncio.wait_for(self._queue.get(), 0.5)
            except TimeoutError:
                continue
            try:
                await self.handle_message(topic, payload)
            finally:
                self._queue.task_done()

    async def handle_message(self, topic: str, payload: bytes) -> None:
        parts = parse_topic(topic)
        if parts is None:
            return
        if parts.kind == "status":
            self.stats.statuses += 1
            try:
                doc = orjson.loads(payload) if payload else {}
            except orjson.JSONDecodeError:
                log.warning("alerts: status on %s is not JSON", topic)
                return
            if isinstance(doc, dict):
                await self.apply(
                    self.stream.on_status(parts.park, parts.firm, parts.gateway, doc, time.time())
                )
            return
        try:
            batch = decode_batch(payload)
        except WireError as exc:
            self.stats.rejected_batches += 1
            log.warning("alerts: batch on %s refused: %s", topic, exc)
            return
        self.stats.batches += 1
        if self.stream.unknown_devices(parts.gateway, batch.readings) and self.registry.needs_refresh(
            missed=True
        ):
            async with self._write_lock:
                await self._with_writer("registry refresh", self.registry.load)
        gaps = [
            {
                "device": d,
                "metric": m,
                "start": a.isoformat(),
                "end": b.isoformat(),
                "count": n,
                "reason": why,
            }
            for d, m, a, b, n, why in batch.gaps
        ]
        outcomes = self.stream.on_batch(
            parts.park, parts.firm, parts.gateway, batch.readings, gaps, batch.sent_at_ms
        )
        await self.apply(outcomes)

    # -- periodic ----------------------------------------------------------------------------------
    async def _periodic_loop(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            next_emission = 0.0
            while not self._stop.is_set():
                await self.evaluate_periodic(conn, emissions=time.monotonic() >= next_emission)
                if time.monotonic() >= next_emission:
                    next_emission = time.monotonic() + self.settings.emission_interval_s
                if self.registry.needs_refresh():
                    await self.registry.load(conn)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.settings.periodic_interval_s)
            with contextlib.suppress(TimeoutError):
                # let the evaluator drain, then keep the last clear timers
                await asyncio.wait_for(self._queue.join(), self.settings.drain_timeout_s)
            await self._persist_clear_marks(conn)

    async def evaluate_periodic(
        self, conn: psycopg.AsyncConnection, *, emissions: bool = True, now: datetime | None = None
    ) -> None:
        t = now.timestamp() if now else time.time()
        out: list[Outcome] = []
        try:
            out += await self.periodic.silence(conn, t)
            out += await self.periodic.seq_gaps(conn, t)
            out += await self.periodic.gateway_states(conn)
            out += await self.periodic.reported_gaps(conn, t)
            out += self.periodic.timed_clears(t)
            if emissions:
                # appends as it goes: an hour recorded as evaluated has its outcome in `out`
                await self.periodic.emissions(conn, now or datetime.now(UTC), into=out)
        except Exception:
            # the connection broke mid-way: write what was decided (the writer retries on its own
            # connection), so an emission hour already marked evaluated does not lose its alert
            await self.apply(out)
            raise
        await self.apply(out)
        await self._persist_clear_marks(conn)

    async def _persist_clear_marks(self, conn: psycopg.AsyncConnection) -> None:
        """Keep the hysteresis clear timers of open alerts in the database, so a restart continues them."""
        marks = self.tracker.take_clear_marks()
        if not marks:
            return
        ids = list(marks)
        at = [datetime.fromtimestamp(v, UTC) if v is not None else None for v in marks.values()]
        try:
            await conn.execute(
                "UPDATE alerts a SET clear_since = m.at FROM unnest(%s::bigint[], %s::timestamptz[]) AS m(id, at) "
                "WHERE a.alert_id = m.id AND a.state <> 'resolved'",
                (ids, at),
            )
        except psycopg.Error:
            self.tracker.clear_marks = {**marks, **self.tracker.clear_marks}  # kept for the next try
            raise

    # -- publishing --------------------------------------------------------------------------------
    async def _publish_loop(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            await conn.execute("LISTEN pp_alerts")
            cursor = await self._cursor(conn)
            async with self._client("pub") as client:
                await self._publish_current(conn, client, None)
                while True:
                    stopping = self._stop.is_set()
                    cursor = await self._publish_new(conn, client, cursor)
                    if stopping:
                        return
                    async for _ in conn.notifies(timeout=self.settings.publish_poll_s, stop_after=1):
                        pass

    async def _cursor(self, conn: psycopg.AsyncConnection) -> int:
        cur = await conn.execute("SELECT event_id FROM alert_publish_cursor WHERE name = %s", (_CURSOR,))
        row = await cur.fetchone()
        if row:
            return int(row[0])
        cur = await conn.execute("SELECT coalesce(max(event_id), 0) FROM alert_events")
        start = int((await cur.fetchone() or (0,))[0])
        await conn.execute(
            "INSERT INTO alert_publish_cursor VALUES (%s, %s) ON CONFLICT DO NOTHING", (_CURSOR, start)
        )
        return start

    async def _publish_new(self, conn: psycopg.AsyncConnection, client: aiomqtt.Client, cursor: int) -> int:
        while True:
            cur = await conn.execute(
                """SELECT e.event_id, e.alert_id, e.at, e.actor, e.action, e.comment, e.detail, pp_alert_json(a),
                          a.park_id, a.rule_id, a.subject, a.resolved_by
                   FROM alert_events e JOIN alerts a USING (alert_id)
                   WHERE e.event_id > %s AND e.event_id <= pp_alert_events_settled_upto(%s, 500)
                   ORDER BY e.event_id""",
                (cursor, cursor),
            )
            rows = await cur.fetchall()
            if not rows:
                return cursor
            parks: set[str] = set()
            for (
                ev_id,
                alert_id,
                at,
                actor,
                action,
                comment,
                detail,
                alert,
                park,
                rule_id,
                subject,
                _rb,
            ) in rows:
                body = {
                    "v": 1,
                    "event": {
                        "event_id": ev_id,
                        "alert_id": alert_id,
                        "at": at,
                        "actor": actor,
                        "action": action,
                        "comment": comment,
                        "detail": detail,
                    },
                    "alert": alert,
                }
                if self._published.get(ev_id) != (alert_id, at):
                    await client.publish(alerts_topic(park, "events"), orjson.dumps(body, default=str), qos=1)
                    self._remember_published(ev_id, alert_id, at)
                    self.stats.events_published += 1
                parks.add(park)
                if action == "resolved" and actor != "system":
                    self.tracker.resolved_elsewhere((rule_id, subject), alert_id, manual=True)
            await self._publish_current(conn, client, parks)
            cursor = rows[-1][0]
            await conn.execute(
                "UPDATE alert_publish_cursor SET event_id = %s WHERE name = %s", (cursor, _CURSOR)
            )

    def _remember_published(self, ev_id: int, alert_id: int, at: datetime) -> None:
        """Remember a sent event by id and content: after a failover the new primary may lack the
        stored cursor's last update (skip what was sent), or reuse an unreplicated id for another
        event (different content: send it)."""
        self._published[ev_id] = (alert_id, at)
        if len(self._published) > _PUBLISHED_MEMORY:
            del self._published[next(iter(self._published))]

    async def _publish_current(
        self, conn: psycopg.AsyncConnection, client: aiomqtt.Client, parks: set[str] | None
    ) -> None:
        if parks is None:
            cur = await conn.execute("SELECT park_id FROM parks UNION SELECT DISTINCT park_id FROM alerts")
            parks = {r[0] for r in await cur.fetchall() if self.settings.park in ("+", r[0])}
        for park in sorted(parks):
            cur = await conn.execute(
                "SELECT coalesce(jsonb_agg(pp_alert_json(a) ORDER BY a.opened_at, a.alert_id), '[]'::jsonb) "
                "FROM alerts a WHERE a.park_id = %s AND a.state <> 'resolved'",
                (park,),
            )
            row = await cur.fetchone()
            alerts: Any = row[0] if row else []
            body = {
                "v": 1,
                "park": park,
                "at": datetime.now(UTC).isoformat(),
                "count": len(alerts),
                "alerts": alerts,
            }
            await client.publish(alerts_topic(park, "current"), orjson.dumps(body), qos=1, retain=True)

    # -- webhooks ----------------------------------------------------------------------------------
    async def _webhook_loop(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            await conn.execute("LISTEN pp_webhooks")
            async with httpx.AsyncClient() as client:
                while not self._stop.is_set():
                    n = await self.webhooks.run_once(conn, client)
                    self.stats.webhooks_delivered = self.webhooks.delivered
                    if n == 0:
                        async for _ in conn.notifies(timeout=self.settings.webhook_poll_s, stop_after=1):
                            pass
