"""Database HA with real processes: etcd, two Patroni-managed PostgreSQL 15 clusters, a real
Mosquitto, ingest as a real subprocess on the multi-host URL, gateways publishing at QoS 1.

- failover: the primary's PostgreSQL is SIGKILLed under load, Patroni promotes the replica, ingest
  reconnects; batches the old primary acknowledged but never replicated (asynchronous replication)
  come back through seq-gap detection and resend requests; everything ends in the new primary
  exactly once.
- switchover: `patronictl switchover` under load; nothing is lost, so nothing has to be re-sent.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psycopg
from gateway_standin import ResendingGateways
from ha_testkit import HaDb, batch_keys, wait_for

from ingest.harness import IngestProcess, count_stored, wait_stored
from ingest.loadgen import LoadPlan, plan_load
from parkpulse.db import connect
from parkpulse.registry import import_registry
from parkpulse.services import MosquittoBroker, free_port
from parkpulse.synthetic import synthetic_park

READINGS = 240_000
PER_MESSAGE = 400  # 600 batches over 4 gateways
RATE = 60.0  # batches/s: about 10 s of publishing, 24 000 readings/s


def _setup(ha_db: HaDb, broker: MosquittoBroker, uid: str, tmp_path: Path) -> tuple[LoadPlan, IngestProcess]:
    pf = synthetic_park(uid, firms=4, meters_per_gateway=5)
    with connect(ha_db.url) as conn:
        import_registry(conn, pf)
    plan = plan_load(pf, READINGS, per_message=PER_MESSAGE)
    ingest = IngestProcess(
        ha_db.url,
        broker.url,
        f"pp-ha-{uid}",
        free_port(),
        park=uid,
        flush_interval_s=0.05,
        cache_miss_refresh_s=0,
        rollup_interval_s=0,
        db_retry_min_s=0.1,
        db_retry_max_s=0.5,
        resend_delay_s=1,
        resend_interval_s=0.5,
        resend_retry_min_s=3,
        prune_interval_s=3600,
    )
    ingest.start(log_path=str(tmp_path / "ingest.log"))
    return plan, ingest


def _check_exactly_once(ha_db: HaDb, plan: LoadPlan, gws: ResendingGateways) -> None:
    wait_stored(ha_db.url, plan.last_seq, timeout=60)
    got = count_stored(ha_db.url, plan.gateways)
    sent_keys = set(gws.sent)
    assert len(sent_keys) == len(plan.messages), "every planned batch was published"
    assert batch_keys(ha_db.url, plan.gateways) == sent_keys, "every (gateway, seq) sent, once"
    assert got.readings == plan.readings, f"readings stored {got.readings} != sent {plan.readings}"
    assert got.duplicate_rows == 0 and got.distinct == plan.readings
    assert got.dead_letters == 0 and got.seq_gaps == 0, got


def _log_tail(tmp_path: Path) -> str:
    p = tmp_path / "ingest.log"
    return p.read_text(errors="replace")[-3000:] if p.exists() else ""


def test_failover_under_load_loses_nothing_and_gap_fill_brings_back_unreplicated_batches(
    ha_db: HaDb, broker: MosquittoBroker, unique_id: str, tmp_path: Path
) -> None:
    cluster = ha_db.cluster
    old = cluster.wait_leader()
    replica = cluster.other(old)
    plan, ingest = _setup(ha_db, broker, unique_id, tmp_path)
    gws = ResendingGateways(broker.url, unique_id, plan.messages, RATE).start()
    try:
        wait_for(lambda: len(batch_keys(old.dsn(ha_db.name), plan.gateways)) >= 120, 30, "first batches")
        # The primary stops sending WAL (its WAL sender is stopped, as by a stalled link between the
        # nodes): what it commits from now on is acknowledged to the gateways but never replicated.
        sender = cluster.wal_sender_pid(old)
        os.kill(sender, signal.SIGSTOP)
        cluster.wait_replayed(replica)  # what was already on the wire is received and replayed
        on_replica = batch_keys(replica.dsn(ha_db.name), plan.gateways)
        wait_for(
            lambda: len(batch_keys(old.dsn(ha_db.name), plan.gateways)) >= len(on_replica) + 60,
            30,
            "batches committed on the primary only",
        )
        on_primary = batch_keys(old.dsn(ha_db.name), plan.gateways)
        killed = old.kill_postgres()  # SIGKILL: the stopped WAL sender dies with the rest
        t_kill = time.monotonic()
        new = cluster.wait_leader(60, not_=old)
        promoted_s = time.monotonic() - t_kill
        gws.wait(90)
        _check_exactly_once(ha_db, plan, gws)
        health = ingest.health()
        metrics = ingest.metrics()
    except BaseException:
        print(_log_tail(tmp_path))
        raise
    finally:
        gws.close()
        ingest.stop(timeout=15)

    unreplicated = on_primary - on_replica
    assert killed and new is replica, "Patroni promoted the replica"
    assert len(unreplicated) >= 60, "the scenario left acknowledged batches only on the dead primary"
    assert unreplicated <= set(gws.resent), "every unreplicated batch came back by a resend request"
    assert metrics.get("pp_ingest_resend_requests_total", 0) >= 1
    assert metrics.get("pp_ingest_seq_gap_batches_filled_total", 0) >= len(unreplicated)
    assert health is not None and health["database_ok"] is True
    print(
        f"\nfailover: promoted in {promoted_s:.1f} s; {len(unreplicated)} batches acknowledged by the "
        f"old primary were not replicated; {len(gws.requests)} resend requests fetched "
        f"{len(gws.resent)} batches ({len(set(gws.resent))} distinct); "
        f"{plan.readings} readings in {len(plan.messages)} batches stored exactly once"
    )


def test_switchover_under_load_loses_nothing_and_needs_no_resend(
    ha_db: HaDb, broker: MosquittoBroker, unique_id: str, tmp_path: Path
) -> None:
    cluster = ha_db.cluster
    old = cluster.wait_leader()
    plan, ingest = _setup(ha_db, broker, unique_id, tmp_path)
    gws = ResendingGateways(broker.url, unique_id, plan.messages, RATE).start()
    try:
        wait_for(lambda: len(batch_keys(old.dsn(ha_db.name), plan.gateways)) >= 150, 30, "first batches")
        t0 = time.monotonic()
        new = cluster.switchover()
        switch_s = time.monotonic() - t0
        assert gws.published < len(plan.messages), "the switchover happened under load"
        gws.wait(90)
        _check_exactly_once(ha_db, plan, gws)
        metrics = ingest.metrics()
        with psycopg.connect(ha_db.url, autocommit=True) as c:
            port = c.info.port
    except BaseException:
        print(_log_tail(tmp_path))
        raise
    finally:
        gws.close()
        ingest.stop(timeout=15)
    assert new is not old and port == new.pg_port, "the multi-host URL now lands on the new primary"
    assert metrics.get('pp_ingest_db_errors_total{kind="transient"}', 0) >= 1, "ingest saw the switch"
    assert gws.resent == [], "a clean switchover ships all WAL first: no gap to fill"
    print(f"\nswitchover: {switch_s:.1f} s; {plan.readings} readings stored exactly once, 0 re-sent")
