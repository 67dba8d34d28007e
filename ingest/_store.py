"""The writer's side: one transaction per flush, exactly-once by (gateway, seq).

Order of work inside the transaction (each step takes its locks in a sorted order so two ingest
processes never deadlock): batch keys → readings (binary COPY) → dead letters, counter events,
data gaps, rollup buckets → device_status (sorted by device_pk) → status upserts → gateway_seq
(locked, sorted by gateway) and seq_gaps → commit. The caller acknowledges the messages after.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import errors as pgerr

from ingest._prepare import _BUCKET_MS, DeadLetter, Prepared, ms_to_dt

__all__ = ["FlushResult", "Store", "is_transient"]

log = logging.getLogger("parkpulse.ingest.store")

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_COPY_TRAILER = b"\xff\xff"
_READING_COLS = "(device_pk, metric_id, ts, value, quality)"


@dataclass
class FlushResult:
    readings: int = 0
    batches: int = 0
    duplicate_batches: int = 0
    duplicate_rows: int = 0
    dead_letters: int = 0
    dead_batch: int = 0
    gaps_detected: int = 0
    gap_batches: int = 0
    gap_batches_filled: int = 0
    statuses: int = 0
    seconds: float = 0.0
    gateways: dict[str, tuple[int, int]] = field(default_factory=dict)  # gateway → (contiguous, max)


def is_transient(exc: BaseException) -> bool:
    """Retry the same flush unless the database refused the data itself (bad value, constraint).

    Connection loss, shutdown, deadlocks, a read-only server during failover, missing migrations:
    all are retried with backoff and nothing is acknowledged meanwhile.
    """
    return not isinstance(exc, psycopg.DataError | psycopg.IntegrityError)


class Store:
    """Owns one connection. `write(items)` runs one transaction; errors propagate to the caller."""

    def __init__(self, dsn: str, application_name: str, seq_from_first_seen: bool = False) -> None:
        self.dsn = dsn
        self.application_name = application_name
        self.seq_from_first_seen = seq_from_first_seen
        self.conn: psycopg.Connection | None = None
        self._months: set[tuple[int, int]] = set()

    def connect(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.close()
            self.conn = psycopg.connect(
                self.dsn,
                autocommit=False,
                connect_timeout=5,
                application_name=self.application_name,
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=3,
                keepalives_count=3,
            )
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                self.conn.close()
            self.conn = None

    # -- one flush -----------------------------------------------------------------------------
    def write(self, items: list[Prepared]) -> FlushResult:
        conn = self.connect()
        res = FlushResult()
        try:
            self._ensure_partitions(conn, items)
            self._write(conn, items, res)
            conn.commit()
        except BaseException:
            try:
                if not conn.closed:
                    conn.rollback()
            except Exception:
                self.close()
            raise
        return res

    def _ensure_partitions(self, conn: psycopg.Connection, items: list[Prepared]) -> None:
        """Create the monthly partitions the flush needs, in a short transaction of its own
        (attaching a partition locks `readings`; never hold that inside the long flush transaction)."""
        months: set[tuple[int, int]] = set()
        for p in items:
            if p.kind == "batch" and p.n:
                months |= p.months()
        months -= self._months
        if not months:
            return
        for y, m in sorted(months):
            conn.execute("SELECT pp_ensure_partition(%s)", (datetime(y, m, 1, tzinfo=UTC),))
        conn.commit()
        self._months |= months

    def _write(self, conn: psycopg.Connection, items: list[Prepared], res: FlushResult) -> None:
        """The flush's statements, in the order of the module docstring, on one transaction."""
        cur = conn.cursor()
        new = self._claim_batches(cur, _unique_batches(items, res), res)  # 1. which batches are new
        res.batches = len(new)
        self._write_readings(conn, new, res)  # 2. their readings
        self._write_dead_letters(cur, items, new, res)  # 3. dead letters
        self._write_events_gaps_buckets(cur, new)  # 4. counter events, gateway-reported gaps, rollup buckets
        self._write_device_status(cur, new)  # 5. device last-seen
        self._write_statuses(cur, items, res)  # 6. gateway status messages
        if new:  # 7. sequence tracking under the gateway_seq row locks
            self._track_seq(cur, new, res)

    # -- the steps of one flush -------------------------------------------------------------------
    def _claim_batches(
        self, cur: psycopg.Cursor[Any], uniq: list[Prepared], res: FlushResult
    ) -> list[Prepared]:
        """The batches this flush stores: above their gateway's watermark, and whose key this
        transaction inserted into `ingest_batches` (a redelivered or concurrent one stores nothing)."""
        if not uniq:
            return []
        gws = sorted({p.gateway or "" for p in uniq})
        cur.execute("SELECT gateway_id, contiguous_seq FROM gateway_seq WHERE gateway_id = ANY(%s)", (gws,))
        wm: dict[str, int] = dict(cur.fetchall())
        cand = sorted(
            (p for p in uniq if (p.seq or 0) > wm.get(p.gateway or "", -1)),
            key=lambda p: (p.gateway, p.seq),
        )
        res.duplicate_batches += len(uniq) - len(cand)
        if not cand:
            return []
        cur.execute(
            """INSERT INTO ingest_batches (gateway_id, seq, n_readings, n_rejected)
               SELECT * FROM unnest(%s::text[], %s::bigint[], %s::int[], %s::int[])
               ON CONFLICT DO NOTHING RETURNING gateway_id, seq""",
            (
                [p.gateway for p in cand],
                [p.seq for p in cand],
                [p.n for p in cand],
                [p.n_rejected for p in cand],
            ),
        )
        fresh = set(cur.fetchall())
        new = [p for p in cand if (p.gateway, p.seq) in fresh]
        res.duplicate_batches += len(cand) - len(new)
        return new

    def _write_readings(self, conn: psycopg.Connection, new: list[Prepared], res: FlushResult) -> None:
        """The new batches' readings (their partitions were made by _ensure_partitions)."""
        total = sum(p.n for p in new)
        if total:
            skipped = self._copy_readings(conn, [p for p in new if p.n], total)
            res.readings = total - skipped
            res.duplicate_rows = skipped

    def _write_dead_letters(
        self, cur: psycopg.Cursor[Any], items: list[Prepared], new: list[Prepared], res: FlushResult
    ) -> None:
        """Dead letters, only once per batch: a duplicate's were written with its first copy."""
        dead, digests = _dead_letter_rows(items, new, res)
        if dead:
            with cur.copy(
                "COPY dead_letters (topic, gateway_id, seq, field, reason, payload, payload_bytes, payload_sha256) FROM STDIN"
            ) as cp:
                for row, of in zip(dead, digests, strict=True):
                    body = row[5] if of is None else of
                    cp.write_row((*row, len(body), hashlib.sha256(body).digest()))
        res.dead_letters = len(dead)

    def _write_events_gaps_buckets(self, cur: psycopg.Cursor[Any], new: list[Prepared]) -> None:
        """The new batches' counter events, gateway-reported gaps and dirty rollup buckets."""
        events = [e for p in new for e in p.events]
        if events:
            cur.executemany(
                """INSERT INTO counter_events (device_pk, metric_id, ts, event, prev, value, correction)
                   VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                events,
            )
        gaps = [g for p in new for g in p.gaps]
        if gaps:
            cur.executemany(
                """INSERT INTO data_gaps (gateway_id, device_id, metric, start_ts, end_ts, count, reason, source)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, 'gateway')""",
                gaps,
            )
        buckets: set[int] = set()
        for p in new:
            if p.n:
                buckets |= p.bucket_set()
        if buckets:
            cur.execute(
                "INSERT INTO rollup_dirty (bucket) SELECT unnest(%s::timestamptz[])",
                ([ms_to_dt(b * _BUCKET_MS) for b in sorted(buckets)],),
            )

    def _write_device_status(self, cur: psycopg.Cursor[Any], new: list[Prepared]) -> None:
        """Device last-seen, sorted by device_pk (two ingest processes lock rows in the same order)."""
        ds = _merged_devstat(new)
        if not ds:
            return
        pks = sorted(ds)
        cur.execute(
            """INSERT INTO device_status AS s (device_pk, last_ts, received_at, last_quality, readings)
               SELECT pk, ts, now(), q, n FROM unnest(%s::int[], %s::timestamptz[], %s::smallint[], %s::bigint[])
                    AS u(pk, ts, q, n) ORDER BY pk
               ON CONFLICT (device_pk) DO UPDATE SET
                 last_quality = CASE WHEN excluded.last_ts >= s.last_ts THEN excluded.last_quality ELSE s.last_quality END,
                 last_ts = greatest(s.last_ts, excluded.last_ts),
                 received_at = excluded.received_at,
                 readings = s.readings + excluded.readings""",
            (pks, [ms_to_dt(ds[k][0]) for k in pks], [ds[k][1] for k in pks], [ds[k][2] for k in pks]),
        )

    def _write_statuses(self, cur: psycopg.Cursor[Any], items: list[Prepared], res: FlushResult) -> None:
        """Gateway status messages (birth / last will) and the device health they report, by gateway."""
        statuses = sorted(
            (p for p in items if p.kind == "status" and p.status), key=lambda p: p.gateway or ""
        )
        for p in statuses:
            cur.execute(
                """INSERT INTO gateway_status AS g (gateway_id, state, since, last_seen, version, devices, spool_depth, last_seq,
                                                   config_mode, config_desired_version, config_applied_version,
                                                   config_applied_sha256, config_state, config_reason, config_at)
                   VALUES (%(gateway_id)s, %(state)s, coalesce(%(ts)s, now()), now(), %(version)s, %(devices)s::jsonb,
                           %(spool_depth)s, %(last_seq)s, %(config_mode)s, %(config_desired_version)s,
                           %(config_applied_version)s, %(config_applied_sha256)s, %(config_state)s, %(config_reason)s,
                           %(config_at)s)
                   ON CONFLICT (gateway_id) DO UPDATE SET
                     since = CASE WHEN g.state IS DISTINCT FROM excluded.state THEN excluded.since ELSE g.since END,
                     state = excluded.state, last_seen = now(),
                     version = coalesce(excluded.version, g.version),
                     devices = CASE WHEN excluded.devices = '[]'::jsonb THEN g.devices ELSE excluded.devices END,
                     spool_depth = coalesce(excluded.spool_depth, g.spool_depth),
                     last_seq = coalesce(excluded.last_seq, g.last_seq),
                     -- a status without its config object (a last will, an older gateway) keeps the last one
                     config_mode = CASE WHEN excluded.config_mode IS NULL THEN g.config_mode ELSE excluded.config_mode END,
                     config_desired_version = CASE WHEN excluded.config_mode IS NULL THEN g.config_desired_version ELSE excluded.config_desired_version END,
                     config_applied_version = CASE WHEN excluded.config_mode IS NULL THEN g.config_applied_version ELSE excluded.config_applied_version END,
                     config_applied_sha256 = CASE WHEN excluded.config_mode IS NULL THEN g.config_applied_sha256 ELSE excluded.config_applied_sha256 END,
                     config_state = CASE WHEN excluded.config_mode IS NULL THEN g.config_state ELSE excluded.config_state END,
                     config_reason = CASE WHEN excluded.config_mode IS NULL THEN g.config_reason ELSE excluded.config_reason END,
                     config_at = CASE WHEN excluded.config_mode IS NULL THEN g.config_at ELSE excluded.config_at END""",
                p.status,
            )
            if p.health:
                cur.executemany(
                    """INSERT INTO device_health AS h (device_pk, poll_lag_ms_last, poll_lag_ms_p99, overruns, timeouts,
                                                       exceptions, reported_at)
                       VALUES (%s, %s, %s, %s, %s, %s, coalesce(%s, now()))
                       ON CONFLICT (device_pk) DO UPDATE SET
                         poll_lag_ms_last = excluded.poll_lag_ms_last, poll_lag_ms_p99 = excluded.poll_lag_ms_p99,
                         overruns = excluded.overruns, timeouts = excluded.timeouts, exceptions = excluded.exceptions,
                         reported_at = excluded.reported_at
                       WHERE excluded.reported_at >= h.reported_at""",
                    [(*row, p.status["ts"] if p.status else None) for row in p.health],
                )
        res.statuses = len(statuses)

    # -- readings --------------------------------------------------------------------------------
    def _copy_readings(self, conn: psycopg.Connection, new: list[Prepared], total: int) -> int:
        """COPY the rows; on a duplicate row fall back to staging + ON CONFLICT DO NOTHING. Returns rows skipped."""
        try:
            with conn.transaction():
                self._copy_into(conn, "readings", new)
            return 0
        except pgerr.UniqueViolation:
            pass
        cur = conn.cursor()
        cur.execute(  # cheap, and right even when an earlier transaction that created it rolled back
            "CREATE TEMP TABLE IF NOT EXISTS pp_ingest_stage (LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        cur.execute("TRUNCATE pp_ingest_stage")
        self._copy_into(conn, "pp_ingest_stage", new)
        cur.execute(
            f"INSERT INTO readings {_READING_COLS} SELECT * FROM pp_ingest_stage ON CONFLICT DO NOTHING"
        )
        inserted = cur.rowcount
        cur.execute("TRUNCATE pp_ingest_stage")
        skipped = total - inserted
        log.info("duplicate readings skipped: %d of %d", skipped, total)
        return skipped

    def _copy_into(self, conn: psycopg.Connection, table: str, new: list[Prepared]) -> None:
        cur = conn.cursor()
        stmt = f"COPY {table} {_READING_COLS} FROM STDIN (FORMAT BINARY)"
        segs: dict[bytes, list[bytearray]] = {}
        for p in new:  # sorted by gateway and seq: time order within each key
            for k, seg in p.groups.items():
                lst = segs.get(k)
                if lst is None:
                    segs[k] = [seg]
                else:
                    lst.append(seg)
        with cur.copy(stmt) as cp:
            cp.write(_COPY_HEADER)
            buf = bytearray()
            for k in sorted(segs):  # big-endian prefix: byte order = (device_pk, metric_id) order
                for seg in segs[k]:
                    buf += seg
                if len(buf) >= 1 << 20:
                    cp.write(buf)
                    buf = bytearray()
            buf += _COPY_TRAILER
            cp.write(buf)

    # -- sequence numbers ------------------------------------------------------------------------
    def _track_seq(self, cur: psycopg.Cursor[Any], new: list[Prepared], res: FlushResult) -> None:
        seqs: dict[str, list[int]] = {}
        for p in new:
            seqs.setdefault(p.gateway or "", []).append(p.seq or 0)
        gws = sorted(seqs)
        # a gateway seen for the first time counts from seq 0 (the wire contract), or from the
        # first batch seen when the setting says gateways may join with a history
        base = [(min(seqs[g]) - 1 if self.seq_from_first_seen else -1) for g in gws]
        cur.execute(
            """INSERT INTO gateway_seq (gateway_id, contiguous_seq, max_seq)
               SELECT gw, b, b FROM unnest(%s::text[], %s::bigint[]) AS u(gw, b) ORDER BY 1 ON CONFLICT DO NOTHING""",
            (gws, base),
        )
        cur.execute(
            "SELECT gateway_id, contiguous_seq, max_seq FROM gateway_seq WHERE gateway_id = ANY(%s) "
            "ORDER BY gateway_id FOR UPDATE",
            (gws,),
        )
        state = {gw: (c, m) for gw, c, m in cur.fetchall()}
        cur.execute(
            "SELECT gateway_id, from_seq, to_seq, detected_at FROM seq_gaps "
            "WHERE gateway_id = ANY(%s) AND filled_at IS NULL ORDER BY gateway_id, from_seq",
            (gws,),
        )
        open_gaps: dict[str, list[tuple[int, int, datetime]]] = {}
        for gw, a, b, det in cur.fetchall():
            open_gaps.setdefault(gw, []).append((a, b, det))
        deletes: list[tuple[str, int]] = []
        inserts: list[tuple[str, int, int, datetime | None, bool]] = []  # gw, from, to, detected_at, filled
        updates: list[tuple[str, int, int]] = []
        for gw in gws:
            c, mx = state[gw]
            arrived = sorted(s for s in set(seqs[gw]) if s > c)
            late = [s for s in arrived if s <= mx]
            fresh = [s for s in arrived if s > mx]
            gaps = open_gaps.get(gw, [])
            if late:
                kept: list[tuple[int, int, datetime]] = []
                for a, b, det in gaps:
                    hit = [s for s in late if a <= s <= b]
                    if not hit:
                        kept.append((a, b, det))
                        continue
                    deletes.append((gw, a))
                    for lo, hi, filled in _runs(a, b, hit):
                        inserts.append((gw, lo, hi, det, filled))
                        if filled:
                            res.gap_batches_filled += hi - lo + 1
                        else:
                            kept.append((lo, hi, det))
                gaps = kept
            expect = mx + 1
            for s in fresh:
                if s > expect:
                    inserts.append((gw, expect, s - 1, None, False))
                    gaps.append((expect, s - 1, datetime.now(UTC)))
                    res.gaps_detected += 1
                    res.gap_batches += s - expect
                expect = s + 1
            new_max = max(mx, fresh[-1]) if fresh else mx
            contiguous = min(a for a, _, _ in gaps) - 1 if gaps else new_max
            updates.append((gw, contiguous, new_max))
            res.gateways[gw] = (contiguous, new_max)
        if deletes:
            cur.executemany("DELETE FROM seq_gaps WHERE gateway_id = %s AND from_seq = %s", deletes)
        if inserts:
            cur.executemany(
                """INSERT INTO seq_gaps (gateway_id, from_seq, to_seq, detected_at, filled_at)
                   VALUES (%s, %s, %s, coalesce(%s, now()), CASE WHEN %s THEN now() END)""",
                inserts,
            )
        cur.execute(
            """UPDATE gateway_seq g SET contiguous_seq = u.c, max_seq = u.m, updated_at = now()
               FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS u(gw, c, m) WHERE g.gateway_id = u.gw""",
            ([u[0] for u in updates], [u[1] for u in updates], [u[2] for u in updates]),
        )


def _unique_batches(items: list[Prepared], res: FlushResult) -> list[Prepared]:
    """The flush's batches, each (gateway, seq) once; the repeats within the flush are counted as duplicates."""
    seen: set[tuple[str, int]] = set()
    uniq: list[Prepared] = []
    for p in items:
        if p.kind != "batch":
            continue
        key = (p.gateway or "", p.seq if p.seq is not None else -1)
        if key in seen:
            res.duplicate_batches += 1
            continue
        seen.add(key)
        uniq.append(p)
    return uniq


def _dead_letter_rows(
    items: list[Prepared], new: list[Prepared], res: FlushResult
) -> tuple[list[DeadLetter], list[bytes | None]]:
    """The dead letters to store, each with the payload digest to store instead of its payload (or None):
    those of every message that is no batch, then those of the new batches."""
    dead: list[DeadLetter] = []
    digests: list[bytes | None] = []
    for p in items:
        if p.kind == "batch":
            continue
        dead.extend(p.dead)
        digests.extend([p.digest_of] * len(p.dead))
        if p.kind == "dead":
            res.dead_batch += 1
    for p in new:
        dead.extend(p.dead)
        digests.extend([None] * len(p.dead))
    return dead, digests


def _merged_devstat(new: list[Prepared]) -> dict[int, list[int]]:
    """device_pk → [last ts, its quality, readings] over the new batches."""
    ds: dict[int, list[int]] = {}
    for p in new:
        for pk, (t, q, n) in p.devstat.items():
            cur_s = ds.get(pk)
            if cur_s is None:
                ds[pk] = [t, q, n]
            else:
                cur_s[2] += n
                if t >= cur_s[0]:
                    cur_s[0], cur_s[1] = t, q
    return ds


def _runs(a: int, b: int, hits: list[int]) -> list[tuple[int, int, bool]]:
    """Split [a, b] into runs of arrived (True) and still-missing (False) sequence numbers; hits sorted."""
    out: list[tuple[int, int, bool]] = []
    pos, i = a, 0
    while i < len(hits):
        j = i
        while j + 1 < len(hits) and hits[j + 1] == hits[j] + 1:
            j += 1
        if hits[i] > pos:
            out.append((pos, hits[i] - 1, False))
        out.append((hits[i], hits[j], True))
        pos, i = hits[j] + 1, j + 1
    if pos <= b:
        out.append((pos, b, False))
    return out
