"""Fixtures of the HA tests: a Patroni cluster (etcd + two PostgreSQL 15 clusters) per test, with
the ParkPulse schema migrated through the multi-host URL. The cluster kit is parkpulse/patroni_local.py,
the fixtures live in ha_testkit.py (test modules import helpers from there; see
tests/ingest/conftest.py for why)."""

from ha_testkit import ha_cluster, ha_db

__all__ = ["ha_cluster", "ha_db"]
