"""Rules, alerts and the console through a Patroni switchover and a failover, all real processes:
etcd and two Patroni-managed PostgreSQL 15 clusters, a real Mosquitto, and `parkpulse alerts run`,
`parkpulse rules serve`, `parkpulse rules run` and `parkpulse console serve` as subprocesses on
the multi-host URL (target_session_attrs=read-write). CEMS minute data is written the way ingest
stores it (ingest itself is tested in test_ha_failover.py).

Each test: an emission exceedance fires one alert and its MQTT event before the event; then
`patronictl switchover`, or the primary's PostgreSQL SIGKILLed; then a new exceedance must raise
exactly one alert and one published event (and the first one stays single), the rules service and
a `rules run` started at the event complete on the new primary, and the console's pages and
/api/v1 answer again (a few failed requests during the promotion are allowed; then all succeed).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from ha_services_kit import (
    ConsoleProber,
    EventListener,
    ServiceProcess,
    cems_pk,
    start_console,
    write_cems_hour,
)
from ha_testkit import HaDb, wait_for

from alerts.harness import sample_park
from console.accounts import add_user
from parkpulse.patroni_local import PatroniCluster, PatroniNode
from parkpulse.registry import import_registry
from parkpulse.services import MosquittoBroker

USER, PASSWORD = "ha.admin", "Zr4!-fail-Mko8q"  # passes the console's password policy
NOX_OVER = 300.0  # mg/m³ at O2 3.5 % (gas boiler reference): above the 200 limit of GB 13271


@dataclass
class Services:
    alerts: ServiceProcess
    rules: ServiceProcess
    console: ServiceProcess
    base: str

    def all(self) -> list[ServiceProcess]:
        return [self.alerts, self.rules, self.console]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()[-2500:]}" for p in self.all())


def _start(ha_db: HaDb, broker: MosquittoBroker, park: str, tmp_path: Path) -> Services:
    db = {"PARKPULSE_DATABASE_URL": ha_db.url}
    alerts = ServiceProcess(
        "alerts",
        ["alerts", "run", "--park", park],
        {
            **db,
            "PARKPULSE_MQTT_URL": broker.url,
            "PARKPULSE_ALERTS_GROUP": f"alerts-{park}",
            "PARKPULSE_ALERTS_EMISSION_INTERVAL_S": "0.5",
            "PARKPULSE_ALERTS_PERIODIC_INTERVAL_S": "0.5",
            "PARKPULSE_ALERTS_PUBLISH_POLL_S": "0.5",
        },
        tmp_path,
    )
    rules = ServiceProcess("rules-serve", ["rules", "serve", "--interval", "0.5"], db, tmp_path)
    console, base = start_console(ha_db.url, tmp_path)
    return Services(alerts, rules, console, base)


def _trigger(event: str, cluster: PatroniCluster, old: PatroniNode) -> PatroniNode:
    if event == "switchover":
        return cluster.switchover()
    cluster.wait_replayed(cluster.other(old))  # this test is about the services, not about lost WAL
    assert old.kill_postgres(), "the primary's PostgreSQL was running"
    return cluster.wait_leader(60, not_=old)


def _counts(url: str, park: str) -> tuple[dict[str, int], dict[str, int]]:
    """Alerts per subject, and 'fired' audit rows per subject, on whichever node the URL reaches."""
    with psycopg.connect(url, autocommit=True) as c:
        alerts = c.execute(
            "SELECT subject, count(*)::int FROM alerts WHERE park_id = %s GROUP BY 1", (park,)
        ).fetchall()
        fired = c.execute(
            "SELECT a.subject, count(*)::int FROM alert_events e JOIN alerts a USING (alert_id) "
            "WHERE a.park_id = %s AND e.action = 'fired' GROUP BY 1",
            (park,),
        ).fetchall()
    return dict(alerts), dict(fired)


def _runs_since(url: str, since: datetime) -> int:
    with psycopg.connect(url, autocommit=True, connect_timeout=3) as c:
        row = c.execute(
            "SELECT count(*)::int FROM rule_runs WHERE started_at > %s AND finished_at IS NOT NULL", (since,)
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize("event", ["switchover", "failover"])
def test_alerts_rules_and_console_ride_out(
    event: str, ha_db: HaDb, broker: MosquittoBroker, unique_id: str, tmp_path: Path
) -> None:
    park, url, cluster = unique_id, ha_db.url, ha_db.cluster
    with psycopg.connect(url, autocommit=True) as conn:
        import_registry(conn, sample_park(park, gateways=2))
        add_user(conn, USER, PASSWORD, "admin")
    s1, s2 = (f"{park}-g{i}/cems-1/nox_mg_m3" for i in (1, 2))
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    listener = EventListener(broker, park)
    svc = _start(ha_db, broker, park, tmp_path)
    prober = ConsoleProber(svc.base, USER, PASSWORD, park)
    try:
        write_cems_hour(url, cems_pk(url, f"{park}-g1"), hour, NOX_OVER)
        wait_for(lambda: listener.fired(s1), 30, "the first alert's MQTT event")
        wait_for(lambda: _runs_since(url, hour), 30, "a rules run before the event")
        prober.start()
        wait_for(lambda: sum(p.ok for p in prober.probes) >= 3, 15, "console answering")

        old = cluster.wait_leader()
        rules_run = ServiceProcess(
            "rules-run",
            ["rules", "run", "--year", str(hour.year), "--park", park],
            {"PARKPULSE_DATABASE_URL": url},
            tmp_path,
        )
        t0 = time.monotonic()
        new = _trigger(event, cluster, old)
        promoted_s = time.monotonic() - t0
        with psycopg.connect(url, autocommit=True) as c:
            port = c.info.port
            db_now = c.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        write_cems_hour(url, cems_pk(url, f"{park}-g2"), hour, NOX_OVER)
        wait_for(lambda: listener.fired(s2), 60, "the new alert's MQTT event")
        alert_s = time.monotonic() - t0
        wait_for(lambda: _runs_since(url, db_now), 60, "a rules serve run on the new primary")
        assert rules_run.wait(90) == 0, rules_run.log()[-2000:]
        t_ok = time.monotonic()
        wait_for(lambda: sum(p.ok for p in prober.probes if p.t > t_ok) >= 6, 30, "console answering again")
        time.sleep(1.0)  # time for a doubled publication to show up (the publisher polls every 0.5 s)
        prober.stop()
        alerts, fired = _counts(url, park)
        api = prober.login().get(f"/api/v1/alerts?park={park}")
    except BaseException:
        print(svc.logs())
        raise
    finally:
        prober.stop()
        listener.close()
        alive = {p.name: p.alive() for p in svc.all()}
        codes = {p.name: p.stop() for p in svc.all()}

    assert new is not old and port == new.pg_port, "the multi-host URL now lands on the new primary"
    assert alerts == {s1: 1, s2: 1} and fired == {s1: 1, s2: 1}, (alerts, fired)
    assert len(listener.fired(s1)) == 1 and len(listener.fired(s2)) == 1, "each event published once"
    assert alive == {"alerts": True, "rules-serve": True, "console": True}, "every service lived through it"
    assert codes["alerts"] == 0 and codes["rules-serve"] == 0, codes  # and stopped cleanly on SIGTERM
    engine_log = svc.alerts.log()
    assert re.search(r"retrying on a new connection|restarting in", engine_log), "the engine saw the outage"
    run = re.search(r"run (\d+): \d+ firms evaluated", rules_run.log())
    assert run, rules_run.log()[-2000:]
    with psycopg.connect(url, autocommit=True) as c:
        assert c.execute(
            "SELECT park_id FROM rule_runs WHERE run_id = %s", (int(run.group(1)),)
        ).fetchone() == (park,)
    assert api.status_code == 200 and {a["subject"] for a in api.json()} >= {s1, s2}
    recent = [p for p in prober.probes if p.t > t_ok]
    assert recent and all(p.ok for p in recent), [p.what for p in recent if not p.ok]
    bad = prober.failures_after(t0)
    print(
        f"\n{event}: new primary in {promoted_s:.1f} s; new exceedance alerted and published "
        f"{alert_s:.1f} s after the event; console: {len(bad)} failed requests "
        f"({', '.join(sorted({p.what for p in bad})) or 'none'}), unavailable {prober.unavailable_s(t0):.1f} s; "
        f"`rules run` started at the event: {rules_run.log().count('retrying on a new connection')} retries; "
        f"alerts engine reconnects: {len(re.findall(r'retrying on a new connection|restarting in', engine_log))}"
    )
