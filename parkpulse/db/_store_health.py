"""What an operator checks about the store: its path, the TimescaleDB version, the rollup lag,
on TimescaleDB every background job whose last run failed (with its error), and the replication
lag: the standbys the primary streams to (`pg_stat_replication`) and, when reading goes to a
replica (PARKPULSE_DATABASE_READ_URL), how far that replica's replay is behind."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from parkpulse.db._rollups import RollupLag, rollup_lag, store_path

__all__ = [
    "JobFailure",
    "ReadReplica",
    "Standby",
    "StoreHealth",
    "read_replica_lag",
    "standbys",
    "store_health",
]


@dataclass(frozen=True)
class JobFailure:
    job_id: int
    proc_name: str
    relation: str | None  # the hypertable or continuous aggregate the job works on
    last_run_started_at: datetime | None
    total_failures: int
    error: str | None


@dataclass(frozen=True)
class Standby:
    """One streaming standby as the primary sees it (pg_stat_replication; the LSN and lag columns
    are NULL for a role without pg_monitor)."""

    name: str  # application_name (cluster_name or the standby's primary_conninfo)
    client_addr: str | None
    state: str | None  # streaming, catchup, backup …
    sync_state: str | None  # async, sync, quorum, potential
    replay_lag_s: float | None  # NULL once the standby has caught up and nothing new was written
    replay_lag_bytes: int | None  # WAL written on the primary and not yet replayed there


@dataclass(frozen=True)
class ReadReplica:
    """The server the read URL reaches, measured on it."""

    in_recovery: bool  # False: the read URL reaches a primary (no replica configured, or promoted)
    replay_lag_s: float | None  # 0 when everything received is replayed, else age of the last replayed commit
    replay_lag_bytes: int | None  # WAL received and not yet replayed
    last_replay_at: datetime | None  # commit time of the last replayed transaction

    def as_dict(self) -> dict[str, object]:
        return {
            "in_recovery": self.in_recovery,
            "replay_lag_s": None if self.replay_lag_s is None else round(self.replay_lag_s, 3),
            "replay_lag_bytes": self.replay_lag_bytes,
            "last_replay_at": None if self.last_replay_at is None else self.last_replay_at.isoformat(),
        }


@dataclass(frozen=True)
class StoreHealth:
    path: str
    timescaledb_version: str | None
    lag: RollupLag
    failed_jobs: list[JobFailure] = field(default_factory=list)
    standbys: list[Standby] = field(default_factory=list)
    read_replica: ReadReplica | None = None  # None: reading goes to the primary itself

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "timescaledb_version": self.timescaledb_version,
            "rollup_dirty_buckets": self.lag.dirty_buckets,
            "rollup_lag_s": None
            if self.lag.oldest_mark_age_s is None
            else round(self.lag.oldest_mark_age_s, 1),
            "rollup_oldest_dirty_bucket": None
            if self.lag.oldest_bucket is None
            else self.lag.oldest_bucket.isoformat(),
            "failed_jobs": [
                {
                    "job_id": j.job_id,
                    "proc": j.proc_name,
                    "relation": j.relation,
                    "last_run_started_at": None
                    if j.last_run_started_at is None
                    else j.last_run_started_at.isoformat(),
                    "total_failures": j.total_failures,
                    "error": j.error,
                }
                for j in self.failed_jobs
            ],
            "standbys": [
                {
                    "name": sb.name,
                    "client_addr": sb.client_addr,
                    "state": sb.state,
                    "sync_state": sb.sync_state,
                    "replay_lag_s": None if sb.replay_lag_s is None else round(sb.replay_lag_s, 3),
                    "replay_lag_bytes": sb.replay_lag_bytes,
                }
                for sb in self.standbys
            ],
            "read_replica": None if self.read_replica is None else self.read_replica.as_dict(),
        }


_FAILED_JOBS = """
SELECT j.job_id, j.proc_name, coalesce(j.hypertable_name::text, j.config ->> 'mat_hypertable_id'),
       s.last_run_started_at, coalesce(s.total_failures, 0),
       (SELECT e.err_message FROM timescaledb_information.job_errors e
        WHERE e.job_id = j.job_id ORDER BY e.start_time DESC NULLS LAST LIMIT 1)
FROM timescaledb_information.jobs j
JOIN timescaledb_information.job_stats s USING (job_id)
WHERE s.last_run_status = 'Failed'
ORDER BY j.job_id
"""


_STANDBYS = """
SELECT coalesce(application_name, ''), client_addr::text, state, sync_state,
       extract(epoch FROM replay_lag)::float8,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint END
FROM pg_stat_replication
ORDER BY application_name, client_addr
"""

# On a standby: caught up when everything received is replayed; otherwise the age of the last
# replayed commit. (now() - pg_last_xact_replay_timestamp() alone grows while the primary is idle.)
_REPLICA = """
SELECT pg_is_in_recovery(),
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() IS NOT NULL AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE greatest(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint,
       pg_last_xact_replay_timestamp()
"""


def standbys(conn: psycopg.Connection) -> list[Standby]:
    """The standbys streaming from the server `conn` reaches (empty when none)."""
    rows = conn.execute(_STANDBYS).fetchall()
    if not conn.autocommit:
        conn.commit()
    return [Standby(str(r[0]), r[1], r[2], r[3], r[4], None if r[5] is None else int(r[5])) for r in rows]


def read_replica_lag(read_conn: psycopg.Connection) -> ReadReplica:
    """How far the server of the read URL is behind, measured on it."""
    row = read_conn.execute(_REPLICA).fetchone()
    if not read_conn.autocommit:
        read_conn.commit()
    assert row is not None
    return ReadReplica(bool(row[0]), row[1], None if row[2] is None else int(row[2]), row[3])


def store_health(conn: psycopg.Connection, read_conn: psycopg.Connection | None = None) -> StoreHealth:
    """The store's health through `conn` (the primary); with `read_conn` (a connection to the read
    URL, when it differs from the primary's), the replica lag measured there too."""
    path = store_path(conn)
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    version = str(row[0]) if row else None
    failed: list[JobFailure] = []
    if version is not None:
        for job_id, proc, rel, started, failures, err in conn.execute(_FAILED_JOBS).fetchall():
            failed.append(JobFailure(int(job_id), str(proc), rel, started, int(failures), err))
    if not conn.autocommit:
        conn.commit()
    replica = None if read_conn is None else read_replica_lag(read_conn)
    return StoreHealth(path, version, rollup_lag(conn), failed, standbys(conn), replica)
