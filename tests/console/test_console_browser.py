"""Browser tests: Playwright (sync API) on Debian's Chromium against `parkpulse console serve`.

The live-alert test raises the alert for real: `parkpulse ingest run` and `parkpulse alerts run` run
as child processes on a private Mosquitto, the test publishes a wire batch whose flue temperature
breaks the shipped `flue-temp-high` threshold rule (250 °C), the engine stores the alert, its audit
trigger NOTIFYs pp_alerts, and the open page shows the row without a reload.
Screenshots go to test-artifacts/console/ (gitignored).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.publish as mqtt_publish
import pytest
from console_testkit import PASSWORDS, ROOT, LiveServer, World, fire_alert, screenshot_dir
from playwright.sync_api import Browser, Page, expect

from parkpulse.services import MosquittoBroker
from parkpulse.wire import data_topic

pytestmark = pytest.mark.browser


def _login(page: Page, server: LiveServer, user: str) -> None:
    page.goto(f"{server.url}/login")
    page.fill("#user", user)
    page.fill("#password", PASSWORDS[user])
    page.click("#login-submit")
    page.wait_for_url(f"{server.url}/alerts")


def _shot(page: Page, name: str) -> Path:
    path = screenshot_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5000
    return path


@pytest.fixture
def services(world: World, broker: MosquittoBroker, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """`parkpulse ingest run` and `parkpulse alerts run` as child processes; yields a log reader."""
    env = {
        **os.environ,
        "PARKPULSE_DATABASE_URL": world.dsn,
        "PARKPULSE_MQTT_URL": broker.url,
        "PARKPULSE_ALERTS_GROUP": f"alerts-{world.p1}",
        "PARKPULSE_INGEST_GROUP": f"ingest-{world.p1}",
        "PARKPULSE_INGEST_HTTP_PORT": "0",
    }  # a free port: other tests may run an ingest too
    logs = []
    procs = []
    for name, args in (("ingest", ["ingest", "run"]), ("alerts", ["alerts", "run", "--park", world.p1])):
        path = tmp_path / f"{name}.log"
        logs.append(path)
        with path.open("wb") as f:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "parkpulse.cli", *args],
                    env=env,
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            )

    def read_logs() -> str:
        return "\n".join(p.read_text(errors="replace") for p in logs)

    def ready() -> bool:
        # a broker drops what nobody has subscribed to yet: publish only once both services hold
        # their subscriptions (ingest says so on /healthz, the alert engine in its log)
        m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", logs[0].read_text(errors="replace"))
        if not m or "alerts: subscribed on" not in logs[1].read_text(errors="replace"):
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{m.group(1)}/healthz", timeout=2) as resp:
                return bool(json.loads(resp.read()).get("subscribed"))
        except (OSError, ValueError):
            return False

    try:
        deadline = time.monotonic() + 30
        while not ready() and time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs), f"a service exited:\n{read_logs()[-3000:]}"
            time.sleep(0.2)
        assert ready(), f"ingest and the alert engine did not subscribe in time:\n{read_logs()[-3000:]}"
        yield read_logs
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)


def _publish_hot_flue(broker: MosquittoBroker, world: World, seq: int) -> None:
    now = int(time.time() * 1000)
    batch = {
        "v": 1,
        "gateway": world.gw1,
        "seq": seq,
        "sent_at": now,
        "readings": [
            ["cems-1", "flue_temp_c", now - 1000, 312.5, 0],
            ["cems-1", "flue_temp_c", now, 315.0, 0],
        ],
    }
    mqtt_publish.single(
        data_topic(world.p1, world.f1, world.gw1),
        json.dumps(batch),
        qos=1,
        hostname="127.0.0.1",
        port=broker.port,
        client_id=f"test-{world.p1}-{seq}",
    )


def test_live_alert_appears_is_acknowledged_and_audited(
    live_server: LiveServer,
    world: World,
    browser: Browser,
    broker: MosquittoBroker,
    services: Callable[[], str],
) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 900}, locale="zh-CN")
    page.goto(f"{live_server.url}/alerts")
    expect(page).to_have_url(f"{live_server.url}/login?next=/alerts")
    _shot(page, "01-login")
    _login(page, live_server, "insp1")
    expect(page.locator("#live")).to_have_class("live on", timeout=10_000)
    expect(page.locator(f"#alert-{world.alert1}")).to_be_visible()
    expect(page.locator(f"#alert-{world.alert2}")).to_have_count(0)
    page.evaluate("window.__noReload = 'still-here'")

    # a reading that breaks a limit, through the real ingest and alert engine
    alert_id = None
    deadline = time.monotonic() + 60
    seq = 1
    while alert_id is None and time.monotonic() < deadline:
        _publish_hot_flue(broker, world, seq)
        seq += 1
        for _ in range(20):
            with world.conn() as conn:
                row = conn.execute(
                    "SELECT alert_id FROM alerts WHERE rule_id = 'flue-temp-high' AND gateway_id = %s",
                    (world.gw1,),
                ).fetchone()
            if row:
                alert_id = int(row[0])
                break
            time.sleep(0.1)
    assert alert_id is not None, f"the alert engine raised no flue-temp-high alert:\n{services()[-3000:]}"
    row = page.locator(f"#alert-{alert_id}")
    expect(row).to_be_visible(timeout=10_000)
    expect(row).to_contain_text("烟气温度")  # the catalogue's Chinese metric name
    # the value of the reading that broke the limit: 312.5, or 315 when the alert was refreshed by the
    # batch's later reading (or a re-published batch on a slow machine) before the page read it
    expect(row).to_contain_text(re.compile(r"312\.5|315"))
    assert page.evaluate("window.__noReload") == "still-here", "the page reloaded"
    # an alert of another park raised meanwhile never shows up
    with world.conn() as conn:
        foreign = fire_alert(conn, world, world.p2, "-browser")
    page.wait_for_timeout(1500)
    expect(page.locator(f"#alert-{foreign}")).to_have_count(0)
    _shot(page, "02-alert-feed-live")

    # the real ingest stored the readings: the evidence page shows them
    def stored() -> int:
        with world.conn() as conn:
            got = conn.execute(
                "SELECT count(*) FROM v_readings WHERE gateway_id = %s AND metric = 'flue_temp_c'",
                (world.gw1,),
            ).fetchone()
        return int(got[0]) if got else 0

    deadline = time.monotonic() + 20
    while stored() == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stored() > 0, f"ingest stored no reading:\n{services()[-3000:]}"

    # evidence page, acknowledge, audit trail
    page.click(f"#alert-{alert_id} a[href='/alerts/{alert_id}']")
    page.wait_for_url(f"{live_server.url}/alerts/{alert_id}")
    expect(page.locator("#alert-state")).to_have_text("告警中")
    expect(page.locator("#minutes tbody tr").first).to_contain_text(re.compile(r"312\.5|315"))
    page.fill("form:has(#btn-acknowledge) input[name=comment]", "已电话通知企业核查烟道温度")
    page.click("#btn-acknowledge")
    page.wait_for_url(f"{live_server.url}/alerts/{alert_id}?done=acknowledged")
    expect(page.locator("#alert-state")).to_have_text("已确认")
    audit = page.locator("#audit tbody tr")
    expect(audit.last).to_contain_text("insp1")
    expect(audit.last).to_contain_text("确认")
    expect(audit.last).to_contain_text("已电话通知企业核查烟道温度")
    expect(audit.first).to_contain_text("system")
    page.fill("#comment-text", "企业回复：换热器故障，已停炉检修")
    page.click("#btn-comment")
    expect(page.locator("#audit tbody tr").last).to_contain_text("换热器故障")
    _shot(page, "03-evidence-acknowledged")
    with page.expect_download() as dl:
        page.click("#export-csv")
    csv_path = dl.value.path()
    assert csv_path and "flue_temp_c" in Path(csv_path).read_text(encoding="utf-8-sig")
    with world.conn() as conn:
        events = conn.execute(
            "SELECT actor, action FROM alert_events WHERE alert_id = %s ORDER BY event_id", (alert_id,)
        ).fetchall()
    assert (
        events[0] == ("system", "fired")
        and ("insp1", "acknowledged") in events
        and ("insp1", "comment") in events
    )
    page.close()
    log = live_server.log_text() + services()
    for secret in PASSWORDS.values():
        assert secret not in log


def test_screenshots_of_the_main_pages(live_server: LiveServer, world: World, browser: Browser) -> None:
    with world.conn() as conn:
        conn.execute(
            """INSERT INTO firm_kpi_results (firm_id, year, park_id, rule_set, rule_version, energy_tce, carbon_tco2,
                   added_value_10k_cny, intensity_tce_per_10k_cny, intensity_change_pct, mu_tax_10k_cny,
                   mu_added_value_10k_cny, score, class, explanation)
               VALUES (%s, 2025, %s, 'zj-mu', '2024.1', 1234.5, 3050.2, 5200, 0.237, -5.1, 21.3, 65.0, 81.5, 'A',
                       '{"class": "A：综合得分 81.5 ≥ 80", "mu_tax": "亩均税收 21.3 万元/亩（基准 15）"}')""",
            (world.f1, world.p1),
        )
        conn.execute(
            """INSERT INTO compliance_results (park_id, firm_id, year, scheme, rule_set, rule_version, verdict, score)
               VALUES (%s, %s, 2025, 'green_factory', 'gbt36132-2025', '1', 'pass', 86.0)""",
            (world.p1, world.f1),
        )
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []  # CSP violations and script errors show up here
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    _login(page, live_server, "admin")
    expect(page.locator("#live")).to_have_class("live on", timeout=10_000)
    _shot(page, "04-alert-feed-admin")
    page.goto(f"{live_server.url}/alerts/{world.alert1}")
    expect(page.locator("svg.chart polyline")).to_have_count(1)
    _shot(page, "05-evidence")
    page.goto(f"{live_server.url}/firms/{world.f1}")
    expect(page.locator("#kpis")).to_contain_text("A类")
    _shot(page, "06-firm")
    page.goto(f"{live_server.url}/firms/{world.f2}")
    expect(page.locator("#kpi-empty")).to_have_text("尚未评价。")
    page.goto(f"{live_server.url}/health")
    expect(page.locator("#gateways")).to_contain_text(world.gw2)
    _shot(page, "07-health")
    page.click("#lang-switch")
    expect(page.locator("h1")).to_have_text("Gateway and device health")
    page.goto(f"{live_server.url}/alerts/{world.alert1}")
    expect(page.locator("h2").first).to_have_text("Summary")
    _shot(page, "08-evidence-english")
    page.close()
    assert errors == []
