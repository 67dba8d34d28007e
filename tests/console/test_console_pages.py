"""Pages and API for signed-in users: feed, evidence, acting, CSV, firm page, health, language."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pytest
from console_testkit import World, fire_alert
from fastapi.testclient import TestClient

AsUser = Callable[[str], tuple[TestClient, str]]


def test_feed_lists_alerts_of_the_inspectors_park_in_chinese_by_default(
    client_as: AsUser, world: World
) -> None:
    c, _ = client_as("insp1")
    page = c.get("/alerts")
    assert page.status_code == 200
    assert 'lang="zh-CN"' in page.text and "实时告警" in page.text
    assert f'id="alert-{world.alert1}"' in page.text
    assert "氮氧化物小时均值" in page.text
    assert f'id="alert-{world.alert2}"' not in page.text


def test_english_is_switchable_by_query_and_remembered_by_cookie(client_as: AsUser, world: World) -> None:
    c, _ = client_as("insp1")
    page = c.get("/alerts?lang=en")
    assert 'lang="en"' in page.text and "Live alert feed" in page.text and "NOx hourly average" in page.text
    assert "pp_lang=en" in page.headers["set-cookie"]
    again = c.get("/alerts")
    assert 'lang="en"' in again.text


def test_filters_by_state_metric_and_firm(client_as: AsUser, world: World) -> None:
    c, _ = client_as("admin")
    both = c.get("/api/v1/alerts").json()
    assert {a["alert_id"] for a in both} == {world.alert1, world.alert2}
    assert [a["alert_id"] for a in c.get(f"/api/v1/alerts?firm={world.f2}").json()] == [world.alert2]
    assert c.get("/api/v1/alerts?metric=so2_mg_m3").json() == []
    assert len(c.get("/api/v1/alerts?metric=nox_mg_m3&park=").json()) == 2
    assert c.get("/api/v1/alerts?state=resolved").json() == []
    page = c.get(f"/alerts?park={world.p1}&firm=&metric=&state=open&kind=emission")
    assert page.status_code == 200
    assert f'id="alert-{world.alert1}"' in page.text and f'id="alert-{world.alert2}"' not in page.text


def test_evidence_page_shows_values_limit_validity_and_audit(client_as: AsUser, world: World) -> None:
    c, _ = client_as("insp1")
    page = c.get(f"/alerts/{world.alert1}?lang=en")
    assert page.status_code == 200
    text = page.text
    assert "valid_minutes" in text and "52" in text and "excluded_by" in text and "GB 13271-2014" in text
    # the per-minute evidence of the hour is a table, minutes excluded by a monitor flag marked
    assert (
        'id="evidence-minutes"' in text
        and text.count('class="invalid"') == 3
        and "flag M (maintenance)" in text
    )
    assert 'id="alert-limit">100' in text
    assert 'id="hourly"' in text and 'id="minutes"' in text and "<polyline" in text
    assert 'class="over"' in text  # hours above the limit are marked
    assert "Fired" in text  # the audit row written by pp_alert_fire
    api = c.get(f"/api/v1/alerts/{world.alert1}/readings").json()
    assert len(api["minutes"]) >= 120 and len(api["hourly"]) >= 3
    assert max(m["avg"] for m in api["minutes"]) > 100 > min(m["avg"] for m in api["minutes"])


def test_acknowledge_comment_resolve_through_forms_leaves_an_audit_trail(
    client_as: AsUser, world: World
) -> None:
    c, csrf = client_as("insp1")
    url = f"/alerts/{world.alert1}/act"
    r = c.post(url, data={"action": "acknowledge", "comment": "去现场核查", "csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == f"/alerts/{world.alert1}?done=acknowledged"
    r = c.post(url, data={"action": "comment", "comment": "企业称脱硝设备检修", "csrf": csrf})
    assert r.status_code == 303
    again = c.post(url, data={"action": "acknowledge", "csrf": csrf})
    assert (
        again.status_code == 409
        and "cannot acknowledge" in again.text
        and "告警当前状态不允许此操作" in again.text
    )
    r = c.post(url, data={"action": "resolve", "comment": "已恢复正常", "csrf": csrf})
    assert r.status_code == 303
    detail = c.get(f"/api/v1/alerts/{world.alert1}").json()
    assert detail["alert"]["state"] == "resolved" and detail["alert"]["resolved_by"] == "insp1"
    assert [(e["actor"], e["action"]) for e in detail["events"]] == [
        ("system", "fired"),
        ("insp1", "acknowledged"),
        ("insp1", "comment"),
        ("insp1", "resolved"),
    ]
    page = c.get(f"/alerts/{world.alert1}")
    assert "企业称脱硝设备检修" in page.text and "已解除" in page.text


def test_api_actions_need_csrf_header_and_work_with_it(client_as: AsUser, world: World) -> None:
    c, csrf = client_as("mgr1")
    r = c.post(
        f"/api/v1/alerts/{world.alert1}/actions",
        json={"action": "acknowledge"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 200 and r.json() == {"alert_id": world.alert1, "state": "acknowledged"}


def test_operator_may_comment_but_not_acknowledge(client_as: AsUser, world: World) -> None:
    c, csrf = client_as("op1")
    r = c.post(f"/alerts/{world.alert1}/act", data={"action": "acknowledge", "csrf": csrf})
    assert r.status_code == 403
    r = c.post(
        f"/alerts/{world.alert1}/act", data={"action": "comment", "comment": "网关已重启", "csrf": csrf}
    )
    assert r.status_code == 303
    with world.conn() as conn:
        assert conn.execute("SELECT state FROM alerts WHERE alert_id = %s", (world.alert1,)).fetchone() == (
            "firing",
        )


def test_evidence_csv_export(client_as: AsUser, world: World) -> None:
    c, csrf = client_as("insp1")
    c.post(
        f"/alerts/{world.alert1}/act",
        data={"action": "comment", "comment": '=HYPERLINK("http://x")', "csrf": csrf},
    )
    r = c.get(f"/alerts/{world.alert1}/evidence.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert f"alert-{world.alert1}-evidence.csv" in r.headers["content-disposition"]
    assert r.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert ["alert_id", str(world.alert1)] in rows
    minutes = [row for row in rows if row and row[0] == "minute"]
    hours = [row for row in rows if row and row[0] == "hour"]
    assert len(minutes) >= 120 and len(hours) >= 3
    assert ["evidence.valid_minutes", "52"] in rows
    header = next(i for i, row in enumerate(rows) if row and row[0] == "evidence.minutes")
    cols = rows[header]
    assert set(cols[1:]) == {"t", "measured", "o2", "flag", "converted", "valid", "reason"}
    minute3 = dict(zip(cols, rows[header + 4], strict=True))
    assert (
        minute3["flag"] == "M" and minute3["valid"] == "False" and minute3["t"].startswith("2026-01-01T08:03")
    )
    comments = [row for row in rows if len(row) > 4 and row[3] == "comment"]
    assert comments and comments[0][4].startswith("'=")  # no formula injection into spreadsheets


def test_firm_page_not_evaluated_then_with_results(client_as: AsUser, world: World) -> None:
    c, _ = client_as("insp1")
    page = c.get(f"/firms/{world.f1}")
    assert page.status_code == 200
    assert 'id="kpi-empty"' in page.text and 'id="compliance-empty"' in page.text and "尚未评价" in page.text
    assert 'id="energy"' in page.text and "电力" in page.text
    with world.conn() as conn:
        conn.execute(
            """INSERT INTO firm_kpi_results (firm_id, year, park_id, rule_set, rule_version, energy_tce,
                   intensity_tce_per_10k_cny, intensity_change_pct, score, class, explanation)
               VALUES (%s, 2025, %s, 'zj-mu-2024', '1', 1234.5, 0.42, -5.1, 81.5, 'A',
                       '{"steps": ["亩均税收 25.1 万元/亩 ≥ 基准 15"], "text_zh": "A 类：综合得分 81.50，排名 1/12。",
                         "text": "A: score 81.50 ranks 1 of 12."}')""",
            (world.f1, world.p1),
        )
        conn.execute(
            """INSERT INTO compliance_results (park_id, firm_id, year, scheme, rule_set, rule_version, verdict, score)
               VALUES (%s, %s, 2025, 'green_factory', 'gbt36132-2025', '1', 'insufficient_data', NULL)""",
            (world.p1, world.f1),
        )
    page = c.get(f"/firms/{world.f1}")
    assert "A类 — 优先发展" in page.text and "亩均税收 25.1 万元/亩" in page.text and "数据不足" in page.text
    assert "A 类：综合得分 81.50，排名 1/12。" in page.text
    assert "A: score 81.50 ranks 1 of 12." in c.get(f"/firms/{world.f1}?lang=en").text
    api = c.get(f"/api/v1/firms/{world.f1}").json()
    assert api["kpis"][0]["class"] == "A" and api["compliance"][0]["verdict"] == "insufficient_data"
    assert {e["carrier"] for e in api["energy"]} == {"electricity"}
    assert api["energy"][0]["recent"] > 0


def test_health_page_for_operator(client_as: AsUser, world: World) -> None:
    c, _ = client_as("op1")
    page = c.get("/health")
    assert page.status_code == 200
    assert world.gw1 in page.text and world.gw2 not in page.text
    assert f"uplink outage at {world.gw1}" in page.text
    devices = c.get("/api/v1/health/devices").json()
    assert {d["device_id"] for d in devices} == {"cems-1", "meter-1"}
    assert all(d["health"] == "ok" and d["delivery_lag_s"] is not None for d in devices)
    lag = {d["device_id"]: (d["poll_lag_ms_p99"], d["poll_lag_ms_last"]) for d in devices}
    assert lag == {"meter-1": (123.5, 7.25), "cems-1": (None, None)}, (
        "poll lag from the gateway's status, none reported for cems-1"
    )
    assert "采集滞后 P99（毫秒）" in page.text  # the default language is zh-CN
    assert (
        '<td class="num poll-lag-p99"' in page.text
        and ">123.5</td>" in page.text
        and ">7.25</td>" in page.text
    )
    gws = c.get("/api/v1/health/gateways").json()
    assert [g["gateway_id"] for g in gws] == [world.gw1]


def test_new_alert_in_scope_appears_in_list(client_as: AsUser, world: World) -> None:
    c, _ = client_as("insp2")
    with world.conn() as conn:
        new = fire_alert(conn, world, world.p2, "-b", value=300)
    assert new in {a["alert_id"] for a in c.get("/api/v1/alerts").json()}


def test_openapi_document_behind_sign_in(client_as: AsUser, make_client: Callable[..., TestClient]) -> None:
    assert make_client().get("/api/v1/openapi.json").status_code == 401
    c, _ = client_as("insp1")
    doc = c.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/api/v1/alerts" in doc["paths"] and "/api/v1/alerts/{alert_id}/actions" in doc["paths"]


def test_health_page_shows_the_store_and_its_rollup_lag(client_as: AsUser, world: World) -> None:
    """Issue 10: an operator sees the storage path, the TimescaleDB version and the rollup lag."""
    c, _ = client_as("op1")
    store = c.get("/api/v1/health/store").json()
    assert store["path"] == "plain" and store["timescaledb_version"] is None and store["failed_jobs"] == []
    with world.conn() as conn:  # marks as ingest leaves them, one made ten minutes ago
        conn.execute(
            "INSERT INTO rollup_dirty (bucket, marked_at) VALUES "
            "('2025-03-01 10:00+00', now() - interval '10 minutes'), ('2025-03-01 10:15+00', now())"
        )
    store = c.get("/api/v1/health/store").json()
    assert store["rollup_dirty_buckets"] == 2 and 590 < store["rollup_lag_s"] < 700
    assert store["rollup_oldest_dirty_bucket"].startswith("2025-03-01T10:00")
    page = c.get("/health?lang=en")
    assert 'id="store-path">plain<' in page.text and "Rollup lag" in page.text
    assert "2 15-minute buckets waiting" in page.text


def test_health_page_shows_each_notification_channel_and_never_its_secrets(
    client_as: AsUser, world: World
) -> None:
    """Issue 15: a dead channel is visible on the health page; its keys are not."""
    with world.conn() as conn:
        conn.execute(
            "INSERT INTO notify_channels (channel_id, kind, config, secrets) VALUES "
            "('wecom-ops', 'wecom', '{}', '{\"key\": \"wk-SECRET-693\"}'), "
            "('mail', 'email', '{}', '{\"password\": \"smtp-SECRET-17\"}')"
        )
        (contact,) = conn.execute(
            "INSERT INTO notify_contacts (channel_id, label) VALUES ('wecom-ops', 'ops group') RETURNING contact_id"
        ).fetchone()  # type: ignore[misc]
        (msg,) = conn.execute(
            "INSERT INTO notify_messages (contact_id, channel_id, idempotency_key, form, language, title, body,"
            " items, first_event_at, state) VALUES (%s, 'wecom-ops', 'k1', 'single', 'en', 't', 'b', 1, now(), 'dead')"
            " RETURNING message_id",
            (contact,),
        ).fetchone()  # type: ignore[misc]
        for i in range(5):
            conn.execute(
                "INSERT INTO notify_attempts (message_id, channel_id, attempt, finished_at, ok, error)"
                " VALUES (%s, 'wecom-ops', %s, now(), false, 'HTTP 502 from the robot')",
                (msg, i + 1),
            )
    c, _ = client_as("op1")
    page = c.get("/health?lang=en").text
    assert 'data-channel="wecom-ops"' in page and 'data-channel="mail"' in page
    row = page[page.index('data-channel="wecom-ops"') :].split("</tr>")[0]
    assert '<td class="channel-status">dead</td>' in row and "HTTP 502 from the robot" in row
    mail = page[page.index('data-channel="mail"') :].split("</tr>")[0]
    assert '<td class="channel-status">OK</td>' in mail
    assert "SECRET" not in page


def test_health_page_shows_replica_and_standby_lag(
    client_as: AsUser, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: the replica's lag on the health page. The store health itself is measured against a
    real streaming replica in tests/kernel/test_read_url.py; here its result is given, to render it."""
    from console import _queries

    real = _queries.store_health_of

    def with_replica(dsn: str, read_url: str | None = None) -> dict[str, object]:
        d = real(dsn, read_url)
        d["read_replica"] = {"in_recovery": True, "replay_lag_s": 95.0, "replay_lag_bytes": 81920}
        d["standbys"] = [
            {
                "name": "pp_replica",
                "state": "streaming",
                "sync_state": "async",
                "replay_lag_s": 95.0,
                "replay_lag_bytes": 81920,
                "client_addr": None,
            }
        ]
        return d

    monkeypatch.setattr(_queries, "store_health_of", with_replica)
    c, _ = client_as("op1")
    page = c.get("/health?lang=en").text
    lag = page[page.index('id="replica-lag"') :].split("</td>")[0]
    assert "warn" in page[page.index('id="replica-lag"') - 40 : page.index('id="replica-lag"')]
    assert "81920 bytes of WAL" in lag
    assert "pp_replica" in page and "streaming · async" in page
