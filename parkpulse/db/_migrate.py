"""Ordered SQL migrations, recorded in the database, safe to re-run.

Files are `NNNN_name.sql`, or `NNNN_name.plain.sql` / `NNNN_name.timescale.sql` for the two
storage paths. Number ranges: 0001-0099 kernel, 0100 ingest, 0200 rules, 0300 alerts,
0400 console, 0500 costs, 0600 notify, 0700 fleet. A file whose first line is
`-- parkpulse: no-transaction` runs statement by statement in autocommit (TimescaleDB
continuous aggregates need that).
`{{timezone}}` and `{{retention}}` are replaced from the settings.

Views and functions are not kept in the numbered migrations (from 0402 on): their current
definitions live once, per owner, in `views/NN_owner.sql` (or `.plain.sql` / `.timescale.sql`),
and every migrate re-applies all of them after the numbered migrations, in one transaction, in
file order (owners in dependency order), with CREATE OR REPLACE so grants survive. Each file's
checksum is recorded in `schema_views` (views/README.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

import psycopg

from parkpulse.catalogue import load_catalogue
from parkpulse.db._connect import connect, database_name, ensure_database, server_dsn
from parkpulse.errors import StoreError

__all__ = [
    "NOT_PRELOADED",
    "Migration",
    "MigrationStatus",
    "StorePath",
    "TimescaleNotPreloaded",
    "ViewFile",
    "detect_path",
    "list_migrations",
    "list_view_files",
    "migrate",
    "plan_path",
    "status",
]

StorePath = Literal["plain", "timescale"]
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(plain|timescale))?\.sql$")
_VIEW_NAME = re.compile(r"^(\d{2})_([a-z0-9_]+?)(?:\.(plain|timescale))?\.sql$")
_NO_TX = "-- parkpulse: no-transaction"
_LOCK = 7_720_001


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    variant: str | None
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ViewFile:
    """One idempotent file of views and functions (`views/NN_owner[.variant].sql`)."""

    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class MigrationStatus:
    path: StorePath | None
    applied: list[tuple[int, str, str]]
    pending: list[Migration]
    # (file, checksum, applied_at) of the view files as last applied; files whose text differs since
    views: list[tuple[str, str, str]] = field(default_factory=list)
    views_pending: list[str] = field(default_factory=list)


def list_migrations(path: StorePath) -> list[Migration]:
    out: list[Migration] = []
    seen: dict[int, str] = {}
    for entry in sorted(
        resources.files("parkpulse.db").joinpath("migrations").iterdir(), key=lambda e: e.name
    ):
        m = _NAME.match(entry.name)
        if not m:
            continue
        version, name, variant = int(m.group(1)), m.group(2), m.group(3)
        if variant and variant != path:
            continue
        if version in seen:
            raise StoreError(f"migrations: version {version:04d} used twice ({seen[version]}, {entry.name})")
        seen[version] = entry.name
        out.append(Migration(version, name, variant, entry.read_text(encoding="utf-8")))
    return sorted(out, key=lambda m: m.version)


def list_view_files(path: StorePath) -> list[ViewFile]:
    """The view files of `path`, in the order they are applied (their number, then name)."""
    out: list[ViewFile] = []
    for entry in sorted(resources.files("parkpulse.db").joinpath("views").iterdir(), key=lambda e: e.name):
        m = _VIEW_NAME.match(entry.name)
        if m and m.group(3) in (None, path):
            out.append(ViewFile(entry.name, entry.read_text(encoding="utf-8")))
    return out


def detect_path(conn: psycopg.Connection, prefer: str = "auto") -> StorePath:
    if prefer in ("plain", "timescale"):
        return prefer  # type: ignore[return-value]
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    return "timescale" if row else "plain"


NOT_PRELOADED = (
    "TimescaleDB is installed on this server but not preloaded, so its extension cannot be created. "
    "Add it to shared_preload_libraries in postgresql.conf (shared_preload_libraries = 'timescaledb'), "
    "restart PostgreSQL, and run `parkpulse db migrate` again. To use plain PostgreSQL instead, run "
    "`parkpulse db migrate --store plain`: the store's path is recorded for good at the first migration. "
    "Nothing was changed."
)


class TimescaleNotPreloaded(StoreError):
    """The server has TimescaleDB installed but not in shared_preload_libraries (nothing was changed)."""


def _timescale_problem(conn: psycopg.Connection, target_has_extension: bool) -> str | None:
    """Why the TimescaleDB path cannot be set up on this server, or None when it can."""
    if target_has_extension:
        return None
    if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone() is None:
        return (
            "--store timescale: the TimescaleDB extension is not installed on this server. Install it, or run "
            "`parkpulse db migrate --store plain`. Nothing was changed."
        )
    row = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
    libs = [x.strip().strip('"') for x in str(row[0] if row else "").split(",")]
    if not any(
        lib == "timescaledb" or lib.endswith("/timescaledb") or lib.startswith("timescaledb-") for lib in libs
    ):
        return NOT_PRELOADED
    return None


def plan_path(dsn: str, prefer: str = "auto") -> StorePath:
    """The path a migration of `dsn` will take, decided before anything is changed.

    A recorded path wins. Otherwise auto picks TimescaleDB when the server offers it; in auto mode
    and with prefer='timescale', a server that has the extension installed but not preloaded is
    refused with one clear StoreError (a silent fallback to plain would be recorded for good).
    """
    name = database_name(dsn)
    with connect(server_dsn(dsn), autocommit=True) as sconn:
        exists = (
            bool(name) and sconn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        )
        if not exists:
            path = detect_path(sconn, prefer)
            problem = _timescale_problem(sconn, False) if path == "timescale" else None
            if problem:
                raise TimescaleNotPreloaded(problem) if problem == NOT_PRELOADED else StoreError(problem)
            return path
    with connect(dsn, autocommit=True) as conn:
        recorded = _recorded_path(conn)
        if recorded:
            return recorded
        path = detect_path(conn, prefer)
        if path == "timescale":
            has_ext = (
                conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
                is not None
            )
            problem = _timescale_problem(conn, has_ext)
            if problem:
                raise TimescaleNotPreloaded(problem) if problem == NOT_PRELOADED else StoreError(problem)
        return path


def _split_statements(text: str) -> list[str]:
    """Split on `;` at line ends, outside dollar-quoted bodies."""
    stmts, buf, in_dollar = [], [], False
    for line in text.splitlines():
        buf.append(line)
        in_dollar ^= line.count("$$") % 2 == 1
        if not in_dollar and line.rstrip().endswith(";"):
            stmt = "\n".join(buf).strip()
            if stmt and not all(x.strip().startswith("--") or not x.strip() for x in buf):
                stmts.append(stmt)
            buf = []
    rest = "\n".join(buf).strip()
    if rest and not all(x.strip().startswith("--") or not x.strip() for x in buf):
        stmts.append(rest)
    return stmts


def _render(text: str, timezone: str, retention: str) -> str:
    return text.replace("{{timezone}}", timezone).replace("{{retention}}", retention)


def _ensure_bookkeeping(conn: psycopg.Connection) -> None:
    conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version integer PRIMARY KEY, name text NOT NULL, variant text,
               checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_views (
               file text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"""
    )


def _apply_views(conn: psycopg.Connection, path: StorePath, timezone: str) -> None:
    """Re-create every view and function from the view files, in one transaction.

    CREATE OR REPLACE keeps the objects (and so the grants on them, e.g. Grafana's role) in
    place; a checksum row per file changes only when the file's text does.
    """
    row = conn.execute("SELECT value FROM store_info WHERE key = 'timezone'").fetchone()
    tz = row[0] if row else timezone  # the store's recorded zone, never a later setting
    files = list_view_files(path)
    with conn.transaction():
        for vf in files:
            try:
                conn.execute(_render(vf.text, tz, "").encode())
            except psycopg.Error as exc:
                raise StoreError(f"views {vf.name}: {str(exc).strip()}") from exc
        recorded = {r[0]: r[1] for r in conn.execute("SELECT file, checksum FROM schema_views")}
        for vf in files:
            if recorded.get(vf.name) != vf.checksum:
                conn.execute(
                    "INSERT INTO schema_views (file, checksum) VALUES (%s, %s) ON CONFLICT (file) "
                    "DO UPDATE SET checksum = excluded.checksum, applied_at = now()",
                    (vf.name, vf.checksum),
                )
        gone = [name for name in recorded if name not in {vf.name for vf in files}]
        if gone:
            conn.execute("DELETE FROM schema_views WHERE file = ANY(%s)", (gone,))


def _recorded_path(conn: psycopg.Connection) -> StorePath | None:
    if conn.execute("SELECT to_regclass('store_info')").fetchone() == (None,):
        return None
    row = conn.execute("SELECT value FROM store_info WHERE key = 'path'").fetchone()
    return row[0] if row else None


def migrate(
    dsn: str,
    *,
    prefer: str = "auto",
    timezone: str = "Asia/Shanghai",
    retention: str = "5 years",
    create_database: bool = True,
) -> list[Migration]:
    """Apply pending migrations, then re-apply the view files; returns the migrations applied
    (empty when up to date).

    The path is decided first (`plan_path`): a server that cannot take it is refused before
    the database is created or touched.
    """
    planned = plan_path(dsn, prefer)
    if create_database:
        ensure_database(dsn)
    applied: list[Migration] = []
    with connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT count(*) FROM pg_timezone_names WHERE name = %s", (timezone,)).fetchone() == (
            0,
        ):
            raise StoreError(f"timezone: {timezone!r} is not a time zone PostgreSQL knows")
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK,))
        try:
            _ensure_bookkeeping(conn)
            path = _recorded_path(conn) or planned
            done = {r[0]: r[1] for r in conn.execute("SELECT version, checksum FROM schema_migrations")}
            for mig in list_migrations(path):
                if mig.version in done:
                    continue
                text = _render(mig.text, timezone, retention)
                try:
                    if text.lstrip().startswith(_NO_TX):
                        for stmt in _split_statements(text):
                            conn.execute(stmt.encode())
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name, variant, checksum) VALUES (%s, %s, %s, %s)",
                            (mig.version, mig.name, mig.variant, mig.checksum),
                        )
                    else:
                        with conn.transaction():
                            conn.execute(text.encode())
                            conn.execute(
                                "INSERT INTO schema_migrations (version, name, variant, checksum) VALUES (%s, %s, %s, %s)",
                                (mig.version, mig.name, mig.variant, mig.checksum),
                            )
                except psycopg.Error as exc:
                    raise StoreError(f"migration {mig.version:04d}_{mig.name}: {str(exc).strip()}") from exc
                if mig.version == 1:
                    conn.execute(
                        "INSERT INTO store_info VALUES ('path', %s), ('timezone', %s) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (path, timezone),
                    )
                applied.append(mig)
            _apply_views(conn, path, timezone)
            sync_metrics(conn)
            if path == "plain":
                conn.execute(
                    "SELECT pp_ensure_partition(now() + make_interval(months => m)) FROM generate_series(-1, 2) AS m"
                )
        finally:
            # after a failure the connection may be gone: never let the unlock hide the first error
            # (the server drops a session's advisory locks with the session)
            if not conn.closed and not conn.broken:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK,))
    return applied


def sync_metrics(conn: psycopg.Connection) -> None:
    """Upsert the metric catalogue into the `metrics` table (ids are stable)."""
    cat = load_catalogue()
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO metrics (metric_id, name, unit, kind, carrier, direction, pollutant, tariff, name_zh,
                                    name_en, min_value, max_value)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (metric_id) DO UPDATE SET name = excluded.name, unit = excluded.unit,
                 kind = excluded.kind, carrier = excluded.carrier, direction = excluded.direction,
                 pollutant = excluded.pollutant, tariff = excluded.tariff, name_zh = excluded.name_zh, name_en = excluded.name_en,
                 min_value = excluded.min_value, max_value = excluded.max_value""",
            [
                (
                    m.id,
                    m.name,
                    m.unit,
                    m.kind,
                    m.carrier,
                    m.direction,
                    m.pollutant,
                    m.tariff,
                    m.zh,
                    m.en,
                    m.min,
                    m.max,
                )
                for m in cat.metrics
            ],
        )


def status(dsn: str) -> MigrationStatus:
    with connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,):
            path = detect_path(conn)
            return MigrationStatus(
                None, [], list_migrations(path), [], [vf.name for vf in list_view_files(path)]
            )
        path = _recorded_path(conn) or detect_path(conn)
        applied = [
            (r[0], r[1], str(r[2]))
            for r in conn.execute("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
        ]
        versions = {a[0] for a in applied}
        views: list[tuple[str, str, str]] = []
        if conn.execute("SELECT to_regclass('schema_views')").fetchone() != (None,):
            views = [
                (r[0], r[1], str(r[2]))
                for r in conn.execute("SELECT file, checksum, applied_at FROM schema_views ORDER BY file")
            ]
        done = {v[0]: v[1] for v in views}
        return MigrationStatus(
            path,
            applied,
            [m for m in list_migrations(path) if m.version not in versions],
            views,
            [vf.name for vf in list_view_files(path) if done.get(vf.name) != vf.checksum],
        )
