"""Delivery from the outbox, every attempt audited.

On a graceful stop the sends already started finish and are recorded; the claimed messages
not yet started are given back untried.

A claim (one short transaction, SKIP LOCKED) counts the attempt, writes its `notify_attempts` row
and pushes the message's next try a lease ahead; the sends then run concurrently and each outcome
is written the moment it is known: sent, or tried again after base × 2^(n−1) seconds (capped,
with jitter), or dead after `max_attempts` tries or `max_age_s`. If the service stops while a
message is in flight, its attempt row stays unfinished and the message is tried again when the
lease runs out — so a message is delivered at least once, and twice only when the service stops
between the channel's answer and the write of that answer (milliseconds).

Group robots are held to their documented rate (data/channel_facts.yaml, 20 a minute): a robot
channel that has had that many attempts in the last minute gets no new claim until it frees up.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg

from notify._channels import Channel, parse_channel
from notify._facts import fact_value
from notify._senders import OutMessage, send_message
from notify._settings import NotifySettings
from notify.errors import DeliveryError
from parkpulse.errors import ParkPulseError
from parkpulse.redact import redact_text

__all__ = ["Deliverer", "DeliveryStats", "backoff_s"]

log = logging.getLogger("parkpulse.notify.deliver")


def backoff_s(attempts: int, base: float, cap: float, jitter: float = 0.2) -> float:
    """Wait after `attempts` failed tries: base × 2^(attempts−1), at most cap, plus up to `jitter` of it."""
    d = min(base * float(2 ** max(attempts - 1, 0)), cap)
    return d * (1.0 + random.uniform(0.0, jitter))


@dataclass
class DeliveryStats:
    sent: int = 0
    failed_attempts: int = 0
    dead: int = 0
    by_channel_failures: dict[str, int] = field(default_factory=dict)


@dataclass
class _Claimed:
    message_id: int
    attempt_id: int
    attempt: int
    age_s: float
    channel: Channel | None
    channel_error: str | None
    out: OutMessage


_CLAIM = """
SELECT m.message_id, m.attempts, extract(epoch FROM now() - m.created_at), m.idempotency_key, m.title, m.body,
       m.language, c.address, ch.channel_id, ch.kind, ch.config, ch.secrets
FROM notify_messages m
JOIN notify_contacts c USING (contact_id)
JOIN notify_channels ch ON ch.channel_id = m.channel_id
WHERE m.state = 'pending' AND m.next_attempt_at <= now() AND ch.enabled
  AND NOT (ch.channel_id = ANY(%(full)s))
ORDER BY m.critical DESC, m.message_id
LIMIT %(batch)s
FOR UPDATE OF m SKIP LOCKED
"""


class Deliverer:
    def __init__(self, settings: NotifySettings, stop: asyncio.Event | None = None) -> None:
        self.s = settings
        self.stats = DeliveryStats()
        self.stop = stop or asyncio.Event()
        self._write = asyncio.Lock()

    async def _robots_at_cap(self, conn: psycopg.AsyncConnection) -> list[str]:
        cur = await conn.execute(
            """SELECT ch.channel_id, ch.kind, count(a.attempt_id)
               FROM notify_channels ch JOIN notify_attempts a USING (channel_id)
               WHERE ch.kind IN ('wecom', 'dingtalk') AND a.started_at > now() - interval '60 seconds'
               GROUP BY ch.channel_id, ch.kind"""
        )
        return [
            cid
            for cid, kind, n in await cur.fetchall()
            if n >= int(fact_value(f"{kind}.messages_per_minute"))
        ]

    async def _claim(self, conn: psycopg.AsyncConnection) -> list[_Claimed]:
        out: list[_Claimed] = []
        async with conn.transaction():
            full = await self._robots_at_cap(conn)
            cur = await conn.execute(_CLAIM, {"full": full, "batch": self.s.batch})
            rows = await cur.fetchall()
            per_robot: dict[str, int] = {}
            picked = []
            for row in rows:
                cid, kind = row[8], row[9]
                if kind in ("wecom", "dingtalk"):  # leave room under the robot's per-minute cap
                    per_robot[cid] = per_robot.get(cid, 0) + 1
                    if per_robot[cid] > int(fact_value(f"{kind}.messages_per_minute")):
                        continue
                picked.append(row)
            if not picked:
                return out
            ids = [r[0] for r in picked]
            await conn.execute(
                "UPDATE notify_messages SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => %s) "
                "WHERE message_id = ANY(%s)",
                (self.s.lease_s, ids),
            )
            cur = await conn.execute(
                """INSERT INTO notify_attempts (message_id, channel_id, attempt)
                   SELECT message_id, channel_id, attempts FROM notify_messages WHERE message_id = ANY(%s)
                   RETURNING message_id, attempt_id""",
                (ids,),
            )
            attempt_ids: dict[int, int] = {int(m): int(a) for m, a in await cur.fetchall()}
            for mid, attempts, age, key, title, body, lang, address, cid, kind, config, secrets in picked:
                channel, error = _channel(cid, kind, config, secrets)
                out.append(
                    _Claimed(
                        mid,
                        attempt_ids[mid],
                        int(attempts) + 1,
                        float(age),
                        channel,
                        error,
                        OutMessage(mid, key, title, body, address, lang),
                    )
                )
        return out

    async def run_once(self, conn: psycopg.AsyncConnection, client: httpx.AsyncClient) -> int:
        """Claim due messages and deliver them; returns how many were tried. `conn` is autocommit."""
        claimed = await self._claim(conn)
        if not claimed:
            return 0
        sem = asyncio.Semaphore(self.s.concurrency)

        async def one(c: _Claimed) -> None:
            async with sem:
                if self.stop.is_set():  # stopping: what has not started yet is given back, untried
                    async with self._write:
                        await self._release(conn, c)
                    return
                ok, status, error = await self._send(c, client)
            async with self._write:
                await self._record(conn, c, ok, status, error)

        await asyncio.gather(*(one(c) for c in claimed))
        return len(claimed)

    async def _send(self, c: _Claimed, client: httpx.AsyncClient) -> tuple[bool, str | None, str | None]:
        if c.channel is None:
            return False, "config", c.channel_error
        try:
            status = await send_message(c.channel, c.out, client)
            return True, status, None
        except DeliveryError as exc:
            return False, exc.status, str(exc)

    async def _release(self, conn: psycopg.AsyncConnection, c: _Claimed) -> None:
        async with conn.transaction():
            await conn.execute("DELETE FROM notify_attempts WHERE attempt_id = %s", (c.attempt_id,))
            await conn.execute(
                "UPDATE notify_messages SET attempts = attempts - 1, next_attempt_at = now() WHERE message_id = %s",
                (c.message_id,),
            )

    async def _record(
        self, conn: psycopg.AsyncConnection, c: _Claimed, ok: bool, status: str | None, error: str | None
    ) -> None:
        cid = c.channel.channel_id if c.channel else "?"
        # one statement: the attempt's outcome and the message's state change together
        if ok:
            await conn.execute(
                """WITH a AS (UPDATE notify_attempts SET finished_at = clock_timestamp(), ok = true, status = %s
                              WHERE attempt_id = %s)
                   UPDATE notify_messages SET state = 'sent', sent_at = clock_timestamp(), last_error = NULL
                   WHERE message_id = %s""",
                (status, c.attempt_id, c.message_id),
            )
            self.stats.sent += 1
            return
        dead = c.attempt >= self.s.max_attempts or c.age_s >= self.s.max_age_s
        delay = backoff_s(c.attempt, self.s.backoff_base_s, self.s.backoff_max_s)
        await conn.execute(
            """WITH a AS (UPDATE notify_attempts SET finished_at = clock_timestamp(), ok = false, status = %s, error = %s
                          WHERE attempt_id = %s)
               UPDATE notify_messages SET state = %s, last_error = %s, next_attempt_at = now() + make_interval(secs => %s)
               WHERE message_id = %s""",
            (status, error, c.attempt_id, "dead" if dead else "pending", error, delay, c.message_id),
        )
        self.stats.failed_attempts += 1
        self.stats.by_channel_failures[cid] = self.stats.by_channel_failures.get(cid, 0) + 1
        if dead:
            self.stats.dead += 1
            log.warning(
                "channel %s: message %s given up after %d attempt(s): %s", cid, c.message_id, c.attempt, error
            )
        else:
            log.info(
                "channel %s: message %s attempt %d failed (%s), retry in %.1f s",
                cid,
                c.message_id,
                c.attempt,
                error,
                delay,
            )


def _channel(cid: str, kind: str, config: Any, secrets: Any) -> tuple[Channel | None, str | None]:
    try:
        return parse_channel(cid, kind, config, secrets), None
    except ParkPulseError as exc:  # messages name fields; secret-named values are masked
        return None, redact_text(str(exc))[:500]
