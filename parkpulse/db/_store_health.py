"""What an operator checks about the store: its path, the TimescaleDB version, the rollup lag and,
on TimescaleDB, every background job whose last run failed (with its error)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from parkpulse.db._rollups import RollupLag, rollup_lag, store_path

__all__ = ["JobFailure", "StoreHealth", "store_health"]


@dataclass(frozen=True)
class JobFailure:
    job_id: int
    proc_name: str
    relation: str | None  # the hypertable or continuous aggregate the job works on
    last_run_started_at: datetime | None
    total_failures: int
    error: str | None


@dataclass(frozen=True)
class StoreHealth:
    path: str
    timescaledb_version: str | None
    lag: RollupLag
    failed_jobs: list[JobFailure] = field(default_factory=list)

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


def store_health(conn: psycopg.Connection) -> StoreHealth:
    path = store_path(conn)
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    version = str(row[0]) if row else None
    failed: list[JobFailure] = []
    if version is not None:
        for job_id, proc, rel, started, failures, err in conn.execute(_FAILED_JOBS).fetchall():
            failed.append(JobFailure(int(job_id), str(proc), rel, started, int(failures), err))
    if not conn.autocommit:
        conn.commit()
    return StoreHealth(path, version, rollup_lag(conn), failed)
