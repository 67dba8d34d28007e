"""Fixtures and checks shared by the HA tests (conftest.py re-exports the fixtures)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from parkpulse.db import migrate
from parkpulse.patroni_local import PatroniCluster

__all__ = ["HaDb", "batch_keys", "ha_cluster", "ha_db", "wait_for"]


@dataclass
class HaDb:
    cluster: PatroniCluster
    name: str
    url: str  # the multi-host URL (target_session_attrs=read-write)

    def on(self, node_dsn: str) -> str:
        """The same database on one node (node_dsn of PatroniNode.dsn())."""
        return node_dsn.rsplit("/", 1)[0] + "/" + self.name


@pytest.fixture
def ha_cluster() -> Iterator[PatroniCluster]:
    """A fresh etcd + Patroni primary + streaming replica. A missing package fails the test
    (HaKitUnavailable names it): ./run setup installs them, so a skip would hide a broken setup."""
    c = PatroniCluster().start()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def ha_db(ha_cluster: PatroniCluster) -> HaDb:
    name = "parkpulse_ha"
    url = ha_cluster.multi_host_url(name)
    migrate(url, prefer="plain")  # `db migrate` itself goes through the multi-host URL
    return HaDb(ha_cluster, name, url)


def batch_keys(dsn: str, gateways: list[str]) -> set[tuple[str, int]]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as c:
        rows = c.execute(
            "SELECT gateway_id, seq FROM ingest_batches WHERE gateway_id = ANY(%s)", (gateways,)
        ).fetchall()
    return {(str(g), int(s)) for g, s in rows}


def wait_for(cond: object, timeout: float = 30.0, what: str = "condition") -> object:
    assert callable(cond)
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {v!r})")
        time.sleep(0.05)
