"""Provision Grafana over its HTTP API with grafana-client: folder, datasource, dashboards.

Idempotent: every object has a stable uid and is created when missing, updated when different
and left alone when equal, so a second push changes nothing (no new dashboard versions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from parkpulse.errors import ConfigError, ParkPulseError
from parkpulse.redact import redact_url
from provisioning.dashboards import DATASOURCE_TYPE, DATASOURCE_UID, FOLDER_TITLE, FOLDER_UID

__all__ = ["DatasourceSettings", "PushError", "PushReport", "connect", "datasource_payload", "push"]

T = TypeVar("T")


class PushError(ParkPulseError):
    """Grafana refused or could not be reached; the message names the step and the object."""


@dataclass(frozen=True)
class DatasourceSettings:
    """How Grafana reaches PostgreSQL (which may differ from how ParkPulse's services do)."""

    host: str
    database: str
    user: str
    password: str | None
    sslmode: str = "disable"

    @classmethod
    def from_url(cls, url: str) -> DatasourceSettings:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigError(f"grafana database url: scheme must be postgresql:// (got {parts.scheme!r})")
        database = parts.path.lstrip("/")
        if not database:
            raise ConfigError(f"grafana database url: no database name in {parts.scheme}://{parts.hostname}…")
        sslmode = parse_qs(parts.query).get("sslmode", ["disable"])[0]
        return cls(
            host=f"{parts.hostname or '127.0.0.1'}:{parts.port or 5432}",
            database=unquote(database),
            user=unquote(parts.username) if parts.username else "grafana",
            password=unquote(parts.password) if parts.password else None,
            sslmode=sslmode,
        )


def datasource_payload(ds: DatasourceSettings) -> dict[str, Any]:
    """The datasource as Grafana's API takes it (mirrors provisioning/datasources/parkpulse.yaml)."""
    payload: dict[str, Any] = {
        "name": "ParkPulse",
        "uid": DATASOURCE_UID,
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "url": ds.host,
        "user": ds.user,
        "isDefault": True,
        "jsonData": {
            "database": ds.database,
            "sslmode": ds.sslmode,
            "postgresVersion": 1600,
            "timescaledb": True,
            "maxOpenConns": 10,
            "maxIdleConns": 5,
            "connMaxLifetime": 14400,
            "timeInterval": "1m",
        },
    }
    if ds.password is not None:
        payload["secureJsonData"] = {"password": ds.password}
    return payload


@dataclass
class PushReport:
    actions: list[tuple[str, str, str]] = field(
        default_factory=list
    )  # (kind, uid, created|updated|unchanged)

    def add(self, kind: str, uid: str, action: str) -> None:
        self.actions.append((kind, uid, action))

    def count(self, action: str) -> int:
        return sum(1 for a in self.actions if a[2] == action)


def _call(step: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except GrafanaException as exc:
        raise PushError(f"grafana push: {step}: HTTP {exc.status_code}: {exc.message}") from exc
    except Exception as exc:  # connection refused, DNS, TLS: niquests' errors
        if isinstance(exc, OSError) or type(exc).__module__.startswith(("niquests", "urllib3")):
            raise PushError(f"grafana push: {step}: cannot reach Grafana: {exc}") from exc
        raise


def _missing(step: str, fn: Callable[[], T]) -> T | None:
    """GET that returns None on 404; any other failure as in `_call`."""

    def get() -> T | None:
        try:
            return fn()
        except GrafanaClientError as exc:
            if exc.status_code == 404:
                return None
            raise

    return _call(step, get)


def _contains(have: Any, want: Any) -> bool:
    """`want` is a subset of `have` (Grafana adds defaults of its own to what it returns)."""
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(_contains(have.get(k), v) for k, v in want.items())
    return bool(have == want)


def _comparable(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in ("id", "version")}


@contextmanager
def connect(url: str, token: str | None, timeout: float = 10.0) -> Iterator[GrafanaApi]:
    """A Grafana API client; its HTTP session (and niquests' idle-connection watcher) closes on exit."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"grafana url: expected http(s)://host[:port][/path] (got {redact_url(url)!r})")
    if not token and not (parts.username and parts.password):
        raise ConfigError("grafana push: give --token (a service-account token) or user:password in --url")
    api = GrafanaApi.from_url(url, credential=token or None, timeout=timeout)
    try:
        yield api
    finally:
        session = getattr(api.client, "s", None)
        if session is not None:
            session.close()


def push(
    api: GrafanaApi,
    datasource: DatasourceSettings,
    dashboards: Mapping[str, Mapping[str, Any]],
    *,
    folder_uid: str = FOLDER_UID,
    folder_title: str = FOLDER_TITLE,
) -> PushReport:
    report = PushReport()

    folder = _missing(f"read folder {folder_uid}", lambda: api.folder.get_folder(folder_uid))
    if folder is None:
        _call(f"create folder {folder_uid}", lambda: api.folder.create_folder(folder_title, uid=folder_uid))
        report.add("folder", folder_uid, "created")
    elif folder.get("title") != folder_title:
        _call(
            f"update folder {folder_uid}",
            lambda: api.folder.update_folder(folder_uid, title=folder_title, overwrite=True),
        )
        report.add("folder", folder_uid, "updated")
    else:
        report.add("folder", folder_uid, "unchanged")

    want = datasource_payload(datasource)
    have = _missing(
        f"read datasource {DATASOURCE_UID}", lambda: api.datasource.get_datasource_by_uid(DATASOURCE_UID)
    )
    if have is None:
        _call(f"create datasource {DATASOURCE_UID}", lambda: api.datasource.create_datasource(want))
        report.add("datasource", DATASOURCE_UID, "created")
    else:
        # The password is write-only in Grafana: always send it, so a rotated one takes effect.
        same = _contains(have, {k: v for k, v in want.items() if k != "secureJsonData"})
        if same and "secureJsonData" not in want:
            report.add("datasource", DATASOURCE_UID, "unchanged")
        else:
            _call(
                f"update datasource {DATASOURCE_UID}",
                lambda: api.datasource.update_datasource_by_uid(DATASOURCE_UID, want),
            )
            report.add("datasource", DATASOURCE_UID, "updated")

    for name, dash in dashboards.items():
        uid = str(dash["uid"])
        current = _missing(f"read dashboard {uid}", partial(api.dashboard.get_dashboard, uid))
        if current is not None:
            same_folder = current.get("meta", {}).get("folderUid") == folder_uid
            if same_folder and _comparable(current.get("dashboard", {})) == _comparable(dash):
                report.add("dashboard", uid, "unchanged")
                continue
        body = {
            "dashboard": {**dash, "id": None},
            "folderUid": folder_uid,
            "overwrite": True,
            "message": f"parkpulse grafana push ({name})",
        }
        _call(f"save dashboard {uid} ({name})", partial(api.dashboard.update_dashboard, body))
        report.add("dashboard", uid, "created" if current is None else "updated")
    return report
