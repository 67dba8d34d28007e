"""Gap fill: ask gateways to re-send batches that never arrived.

A sequence gap still open `delay_s` after it was detected (shorter ones are usually two ingest
processes committing out of order) gets a resend request on `pp/v1/{park}/{firm}/{gateway}/resend`
(docs/wire-format.md, "Resend requests"). The gateway re-sends what its spool still holds and
answers evicted batches with an empty batch whose `gaps` say what was lost; either closes the gap
through the normal late-arrival path. Unanswered requests are repeated with exponential backoff,
at most `max_attempts` times per gap; then the gap stays open (visible in v_data_gaps).

Several ingest processes: only the one holding the PostgreSQL advisory lock
(`RESEND_LOCK_KEY`, hashtext(park setting)) asks (the scheduler state lives in that process);
processes that serve different parks each ask for their own.

Tail gaps: a gap shows only when a later batch arrives. When a gateway's retained status says
`spool_depth` 0 and `last_seq` L (every batch up to L was acknowledged by the broker) while the
highest seq stored is below L, the seqs up to L are treated as an open gap too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

__all__ = ["RESEND_LOCK_KEY", "OpenGap", "ResendRequest", "ResendScheduler"]

log = logging.getLogger("parkpulse.ingest.resend")

RESEND_LOCK_KEY = (
    0x70707273  # "pprs": with hashtext(park), one requesting process per database and park setting
)


@dataclass(frozen=True, slots=True)
class OpenGap:
    gateway: str
    from_seq: int
    to_seq: int
    age_s: float  # since detection, by the database clock


@dataclass(frozen=True, slots=True)
class ResendRequest:
    gateway: str
    from_seq: int
    to_seq: int
    attempt: int


@dataclass(slots=True)
class _State:
    from_seq: int
    to_seq: int
    attempts: int = 0
    next_at: float = 0.0
    gave_up: bool = False


class ResendScheduler:
    """Pure bookkeeping: which open gaps to ask for now. `due()` is called with every open gap."""

    def __init__(
        self, *, delay_s: float, retry_min_s: float, retry_max_s: float, max_attempts: int, max_batches: int
    ) -> None:
        self.delay_s = delay_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.max_attempts = max_attempts
        self.max_batches = max_batches
        self._state: dict[tuple[str, int], _State] = {}
        self.requests = 0
        self.gave_up = 0

    def _inherit(self, gw: str, a: int, b: int) -> _State | None:
        """A gap that shrank or split (part of it arrived) keeps the backoff of the gap it came from."""
        for (g, _), st in self._state.items():
            if g == gw and st.from_seq <= a and b <= st.to_seq:
                return _State(a, b, st.attempts, st.next_at, st.gave_up)
        return None

    def due(self, gaps: list[OpenGap], now: float | None = None) -> list[ResendRequest]:
        now = time.monotonic() if now is None else now
        out: list[ResendRequest] = []
        fresh: dict[tuple[str, int], _State] = {}
        for g in gaps:
            key = (g.gateway, g.from_seq)
            st = self._state.get(key)
            if st is None or st.to_seq != g.to_seq:
                st = self._inherit(g.gateway, g.from_seq, g.to_seq) or _State(g.from_seq, g.to_seq)
            fresh[key] = st
            if g.age_s < self.delay_s or st.gave_up or now < st.next_at:
                continue
            if st.attempts >= self.max_attempts:
                st.gave_up = True
                self.gave_up += 1
                log.warning(
                    "gateway %s: seqs %d..%d still missing after %d resend requests; giving up "
                    "(the gap stays open in seq_gaps)",
                    g.gateway,
                    g.from_seq,
                    g.to_seq,
                    st.attempts,
                )
                continue
            st.attempts += 1
            st.next_at = now + min(self.retry_max_s, self.retry_min_s * 2 ** (st.attempts - 1))
            to = min(g.to_seq, g.from_seq + self.max_batches - 1)
            out.append(ResendRequest(g.gateway, g.from_seq, to, st.attempts))
            self.requests += 1
        self._state = fresh  # filled gaps are forgotten
        return out
