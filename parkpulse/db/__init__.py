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
from parkpulse.db._rollups import RollupLag, refresh_rollups, rollup_lag, store_path
from parkpulse.db._store_health import JobFailure, StoreHealth, store_health

__all__ = [
    "NOT_PRELOADED",
    "JobFailure",
    "Migration",
    "MigrationStatus",
    "RollupLag",
    "StoreHealth",
    "StorePath",
    "TimescaleNotPreloaded",
    "ViewFile",
    "connect",
    "database_name",
    "detect_path",
    "ensure_database",
    "list_migrations",
    "list_view_files",
    "migrate",
    "plan_path",
    "redact",
    "refresh_rollups",
    "rollup_lag",
    "server_dsn",
    "status",
    "store_health",
    "store_path",
]
