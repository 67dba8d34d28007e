"""Webhook delivery from the database outbox: HMAC-SHA256 signed, retried with exponential
backoff, in order per subscription, at least once with an idempotency key.

Request: POST <url>, body = the outbox payload (JSON), headers
  X-ParkPulse-Timestamp: unix seconds
  X-ParkPulse-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>
  Idempotency-Key: same for every retry of one event to one subscription
  X-ParkPulse-Event: fired | acknowledged | resolved | comment | reopened | updated
A 2xx answer marks the delivery done; anything else (or no answer) is retried later.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time
from dataclasses import dataclass

import httpx
import psycopg

from parkpulse.redact import redact_text, redact_url

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookWorker", "backoff_s", "sign", "verify_signature"]

log = logging.getLogger("parkpulse.alerts.webhooks")

SIGNATURE_HEADER = "X-ParkPulse-Signature"
TIMESTAMP_HEADER = "X-ParkPulse-Timestamp"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """What a receiver does: recompute the HMAC and check the timestamp is fresh (replay guard)."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    if abs((now if now is not None else time.time()) - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


def backoff_s(attempts: int, base: float, cap: float, jitter: float = 0.2) -> float:
    """Delay before the next try after `attempts` failed tries: base × 2^(attempts−1), capped, with jitter."""
    factor: int = 2 ** max(attempts - 1, 0)
    d = min(base * factor, cap)
    return d * (1.0 + random.uniform(0.0, jitter))


@dataclass
class _Due:
    delivery_id: int
    subscription_id: int
    key: str
    body: bytes
    attempts: int
    age_s: float
    url: str
    secret: str
    action: str


class WebhookWorker:
    def __init__(
        self,
        *,
        timeout_s: float,
        base_s: float,
        cap_s: float,
        max_age_s: float,
        batch: int,
    ) -> None:
        self.timeout_s = timeout_s
        self.base_s = base_s
        self.cap_s = cap_s
        self.max_age_s = max_age_s
        self.batch = batch
        self.delivered = 0
        self.failed_attempts = 0

    async def run_once(self, conn: psycopg.AsyncConnection, client: httpx.AsyncClient) -> int:
        """Claim due deliveries (SKIP LOCKED: several workers may run), post them, record the outcome."""
        async with conn.transaction():
            cur = await conn.execute(
                """SELECT o.delivery_id, o.subscription_id, o.idempotency_key, o.payload::text, o.attempts,
                          extract(epoch FROM now() - o.created_at), s.url, s.secret, o.payload->'event'->>'action'
                   FROM webhook_outbox o JOIN webhook_subscriptions s USING (subscription_id)
                   WHERE o.state = 'pending' AND o.next_attempt_at <= now() AND s.enabled
                     AND NOT EXISTS (SELECT 1 FROM webhook_outbox h
                                     WHERE h.subscription_id = o.subscription_id AND h.state = 'pending'
                                       AND h.delivery_id < o.delivery_id AND h.next_attempt_at > now())
                   ORDER BY o.delivery_id
                   LIMIT %s
                   FOR UPDATE OF o SKIP LOCKED""",
                (self.batch,),
            )
            rows = [
                _Due(r[0], r[1], r[2], r[3].encode(), r[4], float(r[5]), r[6], r[7], r[8] or "")
                for r in await cur.fetchall()
            ]
            if not rows:
                return 0
            by_sub: dict[int, list[_Due]] = {}
            for d in rows:
                by_sub.setdefault(d.subscription_id, []).append(d)
            results = await asyncio.gather(*(self._post_in_order(client, ds) for ds in by_sub.values()))
            for res in results:
                for d, status, err in res:
                    if status is not None and 200 <= status < 300:
                        await conn.execute(
                            "UPDATE webhook_outbox SET state = 'delivered', delivered_at = now(), attempts = attempts + 1, "
                            "last_attempt_at = now(), last_status = %s, last_error = NULL WHERE delivery_id = %s",
                            (status, d.delivery_id),
                        )
                        self.delivered += 1
                    else:
                        self.failed_attempts += 1
                        attempts = d.attempts + 1
                        dead = d.age_s > self.max_age_s
                        delay = backoff_s(attempts, self.base_s, self.cap_s)
                        await conn.execute(
                            "UPDATE webhook_outbox SET attempts = %s, last_attempt_at = now(), last_status = %s, "
                            "last_error = %s, state = %s, next_attempt_at = now() + make_interval(secs => %s) "
                            "WHERE delivery_id = %s",
                            (
                                attempts,
                                status,
                                (err or "")[:500],
                                "dead" if dead else "pending",
                                delay,
                                d.delivery_id,
                            ),
                        )
                        log.info(
                            "webhook %s: delivery %s failed (%s), retry in %.1f s",
                            redact_url(d.url),
                            d.delivery_id,
                            err or status,
                            delay,
                        )
            return len(rows)

    async def _post_in_order(
        self, client: httpx.AsyncClient, ds: list[_Due]
    ) -> list[tuple[_Due, int | None, str | None]]:
        out: list[tuple[_Due, int | None, str | None]] = []
        for d in ds:
            ts = int(time.time())
            headers = {
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: str(ts),
                SIGNATURE_HEADER: sign(d.secret, ts, d.body),
                "Idempotency-Key": d.key,
                "X-ParkPulse-Event": d.action,
                "User-Agent": "parkpulse-alerts/1",
            }
            try:
                r = await client.post(d.url, content=d.body, headers=headers, timeout=self.timeout_s)
                ok = 200 <= r.status_code < 300
                out.append((d, r.status_code, None if ok else f"HTTP {r.status_code}"))
                if not ok:
                    break  # keep order: the rest wait behind this one
            except httpx.HTTPError as exc:
                out.append((d, None, redact_text(f"{type(exc).__name__}: {exc}")))
                break
        return out
