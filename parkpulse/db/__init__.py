"""The store: connection helpers, migrations and rollup maintenance. Views are the contract."""

from parkpulse.db._connect import connect, database_name, ensure_database, redact, server_dsn
from parkpulse.db._migrate import (
    Migration,
    MigrationStatus,
    StorePath,
    detect_path,
    list_migrations,
    migrate,
    status,
)
from parkpulse.db._rollups import refresh_rollups

__all__ = [
    "Migration",
    "MigrationStatus",
    "StorePath",
    "connect",
    "database_name",
    "detect_path",
    "ensure_database",
    "list_migrations",
    "migrate",
    "redact",
    "refresh_rollups",
    "server_dsn",
    "status",
]
