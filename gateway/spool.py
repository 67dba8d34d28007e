"""Store-and-forward spool: an on-disk SQLite queue (WAL) of sealed batches.

- A batch gets its sequence number when it is written here, in the same transaction that
  raises the persisted `last_seq`; numbers are never reused, also across restarts.
- A batch is sent until the broker acknowledged it (PUBACK). After that it is kept as `acked`
  for `keep_acked_s` (and within `keep_acked_share` of the size bound), so the platform can ask
  for it again (resend request) when the broker lost it after acknowledging it. An evicted acked
  batch leaves a small tombstone (seq, first/last reading time, readings count, its gaps), so a
  later request can still be answered with exactly what was lost.
- The spool is bounded by size. When full it first evicts acked batches (oldest first); then it
  thins the oldest unsent batches, one level at a time:
  1. gauges and states decimated to one reading per device/metric per `thin_window_s`;
  2. gauges and states dropped;
  3. cumulative readings decimated to one per `counter_window_s` (readings carrying a counter
     event are kept);
  4. the oldest batches emptied.
  Every dropped span is recorded in the batch's `gaps` (sent to the platform) and in the local
  `dropped` table. Batches in flight are never rewritten.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from parkpulse.catalogue import load_catalogue
from parkpulse.errors import ParkPulseError

__all__ = ["EVICTED_REASON", "PendingBatch", "Spool", "SpoolError", "Tombstone", "iso_ms"]

Row = list[Any]  # [device, metric, ts_ms, value, quality(, event)]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    level INTEGER NOT NULL DEFAULT 0,
    n INTEGER NOT NULL,
    nbytes INTEGER NOT NULL,
    rows BLOB NOT NULL,
    gaps BLOB
);
CREATE TABLE IF NOT EXISTS evicted (
    seq INTEGER PRIMARY KEY, first_ts INTEGER, last_ts INTEGER, n INTEGER NOT NULL,
    evicted_ms INTEGER NOT NULL, gaps BLOB
);
CREATE TABLE IF NOT EXISTS counters (
    device TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL, ts_ms INTEGER NOT NULL,
    PRIMARY KEY (device, metric)
);
CREATE TABLE IF NOT EXISTS dropped (
    id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, seq INTEGER NOT NULL, device TEXT, metric TEXT,
    start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL, count INTEGER NOT NULL, reason TEXT NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('last_seq', -1);
"""

LEVEL_REASONS = {
    1: "spool_full_gauges_thinned",
    2: "spool_full_gauges_dropped",
    3: "spool_full_counters_thinned",
    4: "spool_full_dropped",
}


EVICTED_REASON = "batch evicted from the gateway spool before it reached the platform"
MAX_TOMBSTONES = 200_000  # ~40 bytes each; the oldest are forgotten beyond this


class SpoolError(ParkPulseError):
    """The spool file cannot be opened or written."""


@dataclass(slots=True)
class PendingBatch:
    seq: int
    n: int
    rows: bytes
    gaps: bytes | None


@dataclass(slots=True)
class Tombstone:
    """What is left of an acked batch evicted from the spool."""

    seq: int
    first_ts: int | None
    last_ts: int | None
    n: int
    gaps: bytes | None

    def gaps_json(self) -> bytes:
        """The wire `gaps` of the empty batch that answers a resend request for this seq."""
        gaps: list[dict[str, Any]] = orjson.loads(self.gaps) if self.gaps else []
        if self.n and self.first_ts is not None and self.last_ts is not None:
            gaps.insert(
                0,
                {
                    "start": iso_ms(self.first_ts),
                    "end": iso_ms(self.last_ts),
                    "count": self.n,
                    "reason": EVICTED_REASON,
                },
            )
        return orjson.dumps(gaps)


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as an ISO 8601 UTC timestamp (the wire's gap times)."""
    return datetime.fromtimestamp(ms / 1000.0, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Spool:
    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int,
        thin_window_s: float = 60.0,
        counter_window_s: float = 900.0,
        keep_acked_s: float = 86_400.0,
        keep_acked_share: float = 0.5,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep_acked_ms = int(keep_acked_s * 1000)
        self.acked_max_bytes = int(max_bytes * keep_acked_share)
        self.thin_window_ms = int(thin_window_s * 1000)
        self.counter_window_ms = int(counter_window_s * 1000)
        cat = load_catalogue()
        self._cumulative = {m.name for m in cat.metrics if m.cumulative}
        self._db: sqlite3.Connection | None = None
        self.bytes = 0  # every batch on disk, acked ones included
        self.depth = 0  # batches not yet acknowledged by the broker
        self.acked = 0  # acked batches kept for resend requests
        self.acked_bytes = 0
        self.evicted = 0  # acked batches evicted (tombstoned) since start
        self.last_seq = -1
        self.dropped_readings = 0
        self.thin_runs = 0

    # lifecycle -----------------------------------------------------------------------------
    def open(self) -> Spool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed batch survives a process kill
            db.executescript(_SCHEMA)
            cols = {r[1] for r in db.execute("PRAGMA table_info(batches)")}
            if "acked_ms" not in cols:  # a spool written before acked batches were kept
                db.execute("ALTER TABLE batches ADD COLUMN acked_ms INTEGER")
            db.execute(
                "CREATE INDEX IF NOT EXISTS batches_acked ON batches (acked_ms) WHERE acked_ms IS NOT NULL"
            )
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {self.path}: {exc}") from None
        self._db = db
        self.last_seq = int(db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()[0])
        self._recount()
        self.expire_acked()
        return self

    def _recount(self) -> None:
        n, b, an, ab = self.db.execute(
            "SELECT count(*), coalesce(sum(nbytes), 0), count(acked_ms), "
            "coalesce(sum(CASE WHEN acked_ms IS NOT NULL THEN nbytes END), 0) FROM batches"
        ).fetchone()
        self.depth, self.bytes = int(n) - int(an), int(b)
        self.acked, self.acked_bytes = int(an), int(ab)

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._db.close()
            self._db = None

    def __enter__(self) -> Spool:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise SpoolError("spool is not open")
        return self._db

    # counters' last values (so steps are detected across restarts) ---------------------------
    def load_counters(self) -> dict[tuple[str, str], tuple[float, int]]:
        return {
            (d, m): (v, t)
            for d, m, v, t in self.db.execute("SELECT device, metric, value, ts_ms FROM counters")
        }

    # writing -------------------------------------------------------------------------------
    def append(
        self,
        rows: list[Row],
        *,
        gaps: list[dict[str, Any]] | None = None,
        counters: Iterable[tuple[str, str, float, int]] = (),
        protect: set[int] | frozenset[int] = frozenset(),
    ) -> int:
        """Seal a batch: assign its seq and commit it (with the counters' last values). Returns the seq."""
        blob = orjson.dumps(rows)
        gblob = orjson.dumps(gaps) if gaps else None
        nbytes = len(blob) + (len(gblob) if gblob else 0)
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            seq = self.last_seq + 1
            db.execute("UPDATE meta SET value=? WHERE key='last_seq'", (seq,))
            db.execute(
                "INSERT INTO batches (seq, created_ms, level, n, nbytes, rows, gaps) VALUES (?, ?, 0, ?, ?, ?, ?)",
                (seq, int(time.time() * 1000), len(rows), nbytes, blob, gblob),
            )
            counters = list(counters)
            if counters:
                db.executemany(
                    "INSERT INTO counters (device, metric, value, ts_ms) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (device, metric) DO UPDATE SET value=excluded.value, ts_ms=excluded.ts_ms",
                    counters,
                )
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise SpoolError(f"spool {self.path}: cannot write batch: {exc}") from None
        self.last_seq = seq
        self.depth += 1
        self.bytes += nbytes
        if self.bytes > self.max_bytes:
            self.make_room(protect | {seq})
        return seq

    def pending(self, after_seq: int, limit: int) -> list[PendingBatch]:
        """Unacknowledged batches with seq > after_seq, oldest first."""
        cur = self.db.execute(
            "SELECT seq, n, rows, gaps FROM batches WHERE seq > ? AND acked_ms IS NULL ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [
            PendingBatch(int(s), int(n), bytes(r), bytes(g) if g is not None else None) for s, n, r, g in cur
        ]

    def ack(self, seqs: Iterable[int]) -> int:
        """The broker acknowledged these batches: keep them as acked (retention), no longer send them."""
        seqs = list(seqs)
        if not seqs:
            return 0
        db = self.db
        marks = ",".join("?" * len(seqs))
        now = int(time.time() * 1000)
        db.execute("BEGIN IMMEDIATE")
        size, done = db.execute(
            f"SELECT coalesce(sum(nbytes), 0), count(*) FROM batches WHERE seq IN ({marks}) AND acked_ms IS NULL",
            seqs,
        ).fetchone()
        db.execute(
            f"UPDATE batches SET acked_ms = ? WHERE seq IN ({marks}) AND acked_ms IS NULL", [now, *seqs]
        )
        db.execute("COMMIT")
        self.depth -= int(done)
        self.acked += int(done)
        self.acked_bytes += int(size)
        if self.keep_acked_ms <= 0 or self.acked_bytes > self.acked_max_bytes:
            self._evict_acked(self.acked_max_bytes if self.keep_acked_ms > 0 else 0)
        return int(done)

    def oldest_ms(self) -> int | None:
        row = self.db.execute("SELECT min(created_ms) FROM batches WHERE acked_ms IS NULL").fetchone()
        return int(row[0]) if row and row[0] is not None else None

    # acked batches kept for resend requests ------------------------------------------------------
    def expire_acked(self, now_ms: int | None = None) -> int:
        """Evict acked batches older than keep_acked_s (by the time of their PUBACK). Returns how many."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return self._evict_acked(None, before_ms=now - self.keep_acked_ms)

    def evict_acked_through(self, seq: int) -> int:
        """Evict the acked batches with seq <= `seq` now (tombstones remain). Returns how many."""
        return self._evict_acked(None, through_seq=seq)

    def _evict_acked(
        self, max_bytes: int | None, *, before_ms: int | None = None, through_seq: int | None = None
    ) -> int:
        """Evict acked batches, oldest seq first, until acked bytes <= max_bytes (or all acked before
        `before_ms`, or up to `through_seq`). Each leaves a tombstone. Returns batches evicted."""
        db = self.db
        evicted = 0
        if through_seq is not None:
            before_ms, max_bytes = None, None
        while self.acked:
            if before_ms is not None or through_seq is not None:
                col, bound = ("acked_ms", before_ms) if before_ms is not None else ("seq - 1", through_seq)
                cand = db.execute(
                    f"SELECT seq, n, nbytes, rows, gaps FROM batches WHERE acked_ms IS NOT NULL AND {col} < ? "
                    "ORDER BY seq LIMIT 500",
                    (bound,),
                ).fetchall()
            else:
                if max_bytes is not None and self.acked_bytes <= max_bytes:
                    break
                cand = db.execute(
                    "SELECT seq, n, nbytes, rows, gaps FROM batches WHERE acked_ms IS NOT NULL ORDER BY seq LIMIT 64"
                ).fetchall()
            if not cand:
                break
            take: list[tuple[int, int, int, bytes, bytes | None]] = []
            size = 0
            for c in cand:
                if max_bytes is not None and self.acked_bytes - size <= max_bytes:
                    break
                take.append(c)
                size += int(c[2])
            now = int(time.time() * 1000)
            stones = []
            for seq, n, _nb, rows_b, gaps_b in take:
                ts = [r[2] for r in orjson.loads(rows_b)] if n else []
                stones.append((seq, min(ts) if ts else None, max(ts) if ts else None, len(ts), now, gaps_b))
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT OR REPLACE INTO evicted (seq, first_ts, last_ts, n, evicted_ms, gaps) VALUES (?,?,?,?,?,?)",
                stones,
            )
            db.executemany("DELETE FROM batches WHERE seq = ?", [(s[0],) for s in stones])
            db.execute(
                "DELETE FROM evicted WHERE seq <= (SELECT seq FROM evicted ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (MAX_TOMBSTONES,),
            )
            db.execute("COMMIT")
            self.acked -= len(take)
            self.acked_bytes -= size
            self.bytes -= size
            self.evicted += len(take)
            evicted += len(take)
            if max_bytes is not None and len(take) < len(cand):
                break
        return evicted

    def retained(self, from_seq: int, to_seq: int, limit: int = 1000) -> list[PendingBatch | Tombstone]:
        """What the spool can answer for a resend request of [from_seq, to_seq]: acked batches as they
        were sent, tombstones of evicted ones; seq order. Unacked batches are left to the normal sender."""
        db = self.db
        out: list[PendingBatch | Tombstone] = [
            PendingBatch(int(s), int(n), bytes(r), bytes(g) if g is not None else None)
            for s, n, r, g in db.execute(
                "SELECT seq, n, rows, gaps FROM batches WHERE seq BETWEEN ? AND ? AND acked_ms IS NOT NULL "
                "ORDER BY seq LIMIT ?",
                (from_seq, to_seq, limit),
            )
        ]
        out += [
            Tombstone(int(s), a, b, int(n), bytes(g) if g is not None else None)
            for s, a, b, n, g in db.execute(
                "SELECT seq, first_ts, last_ts, n, gaps FROM evicted WHERE seq BETWEEN ? AND ? ORDER BY seq LIMIT ?",
                (from_seq, to_seq, limit),
            )
        ]
        out.sort(key=lambda x: x.seq)
        return out[:limit]

    def tombstones(self) -> list[Tombstone]:
        return [
            Tombstone(int(s), a, b, int(n), bytes(g) if g is not None else None)
            for s, a, b, n, g in self.db.execute(
                "SELECT seq, first_ts, last_ts, n, gaps FROM evicted ORDER BY seq"
            )
        ]

    # bounding by size ------------------------------------------------------------------------
    def make_room(self, protect: set[int] | frozenset[int] = frozenset()) -> int:
        """Make the spool fit under 90 % of its bound: first evict acked batches (already delivered,
        kept only for resend requests), then thin the oldest unsent batches. Returns readings dropped."""
        target = int(self.max_bytes * 0.9)
        if self.acked and self.bytes > target:
            self._evict_acked(max(0, self.acked_bytes - (self.bytes - target)))
        dropped = 0
        if self.bytes <= target:
            return 0
        self.thin_runs += 1
        excl = ",".join(str(int(s)) for s in protect) or "-1"
        while self.bytes > target:
            row = self.db.execute(
                f"SELECT min(level) FROM batches WHERE level < 4 AND acked_ms IS NULL AND seq NOT IN ({excl})"
            ).fetchone()
            if row is None or row[0] is None:
                break
            level = int(row[0])
            chunk_n = max(8, self.depth // 10)
            cand = self.db.execute(
                f"SELECT seq, level, rows, gaps FROM batches WHERE level = ? AND acked_ms IS NULL AND seq NOT IN ({excl}) "
                "ORDER BY seq LIMIT ?",
                (level, chunk_n),
            ).fetchall()
            dropped += self._thin(cand, level + 1)
        self.dropped_readings += dropped
        return dropped

    def _thin(self, cand: list[tuple[int, int, bytes, bytes | None]], new_level: int) -> int:
        cumulative = self._cumulative
        seen: set[tuple[str, str, int]] = set()
        window = self.counter_window_ms if new_level == 3 else self.thin_window_ms
        now_ms = int(time.time() * 1000)
        reason = LEVEL_REASONS[new_level]
        updates: list[tuple[int, int, bytes, bytes | None, int, int]] = []
        log: list[tuple[int, int, str | None, str | None, int, int, int, str]] = []
        total = 0
        freed = 0
        for seq, _lvl, rows_b, gaps_b in cand:
            rows: list[Row] = orjson.loads(rows_b)
            gaps: list[dict[str, Any]] = orjson.loads(gaps_b) if gaps_b else []
            keep: list[Row] = []
            lost: dict[tuple[str, str], list[int]] = defaultdict(list)
            for r in rows:
                dev, met, ts = r[0], r[1], r[2]
                cum = met in cumulative
                if new_level == 1:
                    drop = not cum and (dev, met, ts // window) in seen
                    if not cum:
                        seen.add((dev, met, ts // window))
                elif new_level == 2:
                    drop = not cum
                elif new_level == 3:
                    has_event = len(r) > 5 and r[5] is not None
                    drop = cum and not has_event and (dev, met, ts // window) in seen
                    if cum and not has_event:
                        seen.add((dev, met, ts // window))
                else:
                    drop = True
                if drop:
                    lost[(dev, met)].append(ts)
                else:
                    keep.append(r)
            by_series = {
                (g.get("device"), g.get("metric")): g
                for g in gaps
                if str(g.get("reason", "")).startswith("spool_full")
            }
            for (dev, met), tss in lost.items():
                start, end = min(tss), max(tss)
                log.append((now_ms, seq, dev, met, start, end, len(tss), reason))
                total += len(tss)
                g = by_series.get((dev, met))
                if g is None:
                    gaps.append(
                        {
                            "device": dev,
                            "metric": met,
                            "start": iso_ms(start),
                            "end": iso_ms(end),
                            "count": len(tss),
                            "reason": reason,
                        }
                    )
                else:  # one gap per series and batch: widen the earlier one
                    g["start"] = min(g["start"], iso_ms(start))
                    g["end"] = max(g["end"], iso_ms(end))
                    g["count"] += len(tss)
                    g["reason"] = reason
            blob = orjson.dumps(keep)
            gblob = orjson.dumps(gaps) if gaps else None
            nbytes = len(blob) + (len(gblob) if gblob else 0)
            freed += len(rows_b) + (len(gaps_b) if gaps_b else 0) - nbytes
            updates.append((new_level, len(keep), blob, gblob, nbytes, seq))
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        db.executemany("UPDATE batches SET level=?, n=?, rows=?, gaps=?, nbytes=? WHERE seq=?", updates)
        if log:
            db.executemany(
                "INSERT INTO dropped (at_ms, seq, device, metric, start_ms, end_ms, count, reason) VALUES (?,?,?,?,?,?,?,?)",
                log,
            )
        db.execute("COMMIT")
        self.bytes -= freed
        return total

    def dropped_spans(self) -> list[dict[str, Any]]:
        cur = self.db.execute(
            "SELECT seq, device, metric, start_ms, end_ms, count, reason FROM dropped ORDER BY id"
        )
        return [
            {"seq": s, "device": d, "metric": m, "start_ms": a, "end_ms": b, "count": c, "reason": r}
            for s, d, m, a, b, c, r in cur
        ]
