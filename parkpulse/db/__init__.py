"""The store: connection helpers, migrations and rollup maintenance. Views are the contract."""

from parkpulse.db._connect import connect, database_name, ensure_database, redact, server_dsn
from parkpulse.db._migrate import (
    NOT_PRELOADED,
    Migration,
    MigrationStatus,
    StorePath,
    TimescaleNotPreloaded,
    ViewFile,
    detect_path,
    list_migrations,
    list_view_files,
    migrate,
    plan_path,
    status,
)
from parkpulse.db._read import connect_read, read_dsn, read_only_conninfo, wait_replayed
from parkpulse.db._rollups import RollupLag, refresh_rollups, rollup_lag, store_path
from parkpulse.db._store_health import (
    JobFailure,
    ReadReplica,
    Standby,
    StoreHealth,
    read_replica_lag,
    standbys,
    store_health,
)

__all__ = [
    "NOT_PRELOADED",
    "JobFailure",
    "Migration",
    "MigrationStatus",
    "ReadReplica",
    "RollupLag",
    "Standby",
    "StoreHealth",
    "StorePath",
    "TimescaleNotPreloaded",
    "ViewFile",
    "connect",
    "connect_read",
    "database_name",
    "detect_path",
    "ensure_database",
    "list_migrations",
    "list_view_files",
    "migrate",
    "plan_path",
    "read_dsn",
    "read_only_conninfo",
    "read_replica_lag",
    "redact",
    "refresh_rollups",
    "rollup_lag",
    "server_dsn",
    "standbys",
    "status",
    "store_health",
    "store_path",
    "wait_replayed",
]
