"""The live feed over real HTTP: `parkpulse console serve` (uvicorn) + server-sent events."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
from console_testkit import PASSWORDS, LiveServer, World, fire_alert

from console._login_names import load_key, name_hash


def _signed_in(server: LiveServer, user: str) -> httpx.Client:
    c = httpx.Client(base_url=server.url, timeout=httpx.Timeout(15.0))
    r = c.post("/api/v1/session", json={"user": user, "password": PASSWORDS[user]})
    assert r.status_code == 200, r.text
    return c


def _events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) pairs from an SSE line stream; comments (keep-alives) skipped."""
    event, data = "message", ""
    for line in lines:
        if line == "":
            if data:
                yield event, data
            event, data = "message", ""
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()


def _next_alert(events: Iterator[tuple[str, str]]) -> dict[str, object]:
    for name, data in events:
        if name == "alert":
            got: dict[str, object] = json.loads(data)
            return got
    raise AssertionError("stream ended")


def test_sse_delivers_new_alerts_only_within_the_users_scope(live_server: LiveServer, world: World) -> None:
    c1, c2 = _signed_in(live_server, "insp1"), _signed_in(live_server, "insp2")
    with (
        c1.stream("GET", "/alerts/stream?state=all") as s1,
        c2.stream("GET", "/alerts/stream?state=all") as s2,
    ):
        assert s1.status_code == 200 and s1.headers["content-type"].startswith("text/event-stream")
        l1, l2 = s1.iter_lines(), s2.iter_lines()
        assert next(l1).startswith("retry:") and next(l2).startswith("retry:")
        with world.conn() as conn:
            other = fire_alert(conn, world, world.p2, "-live", value=250)  # first: park 2
            mine = fire_alert(conn, world, world.p1, "-live", value=260)  # then: park 1
        first1 = _next_alert(_events(l1))
        assert first1["alert_id"] == mine, "insp1 must not receive park 2's alert (it came first)"
        assert first1["matches"] is True and f'id="alert-{mine}"' in str(first1["html"])
        assert "西园区" not in str(first1["html"])
        first2 = _next_alert(_events(l2))
        assert first2["alert_id"] == other
        # a state change is pushed too, with the new state
        csrf = c1.get("/api/v1/me").json()["csrf_token"]
        r = c1.post(
            f"/api/v1/alerts/{mine}/actions", json={"action": "acknowledge"}, headers={"X-CSRF-Token": csrf}
        )
        assert r.status_code == 200
        ack = _next_alert(_events(l1))
        assert ack["alert_id"] == mine and ack["state"] == "acknowledged" and ack["action"] == "acknowledged"
    c1.close()
    c2.close()


def test_sse_catch_up_since_page_render_is_scoped(live_server: LiveServer, world: World) -> None:
    c1 = _signed_in(live_server, "insp1")
    with c1.stream("GET", "/alerts/stream?state=open&since=0") as s1:
        first = _next_alert(_events(s1.iter_lines()))
        assert first["alert_id"] == world.alert1 and first["action"] == "catch-up"
    c1.close()
    anon = httpx.get(f"{live_server.url}/alerts/stream", timeout=5)
    assert anon.status_code == 401


def test_server_log_holds_no_secrets(live_server: LiveServer, world: World) -> None:
    c = _signed_in(live_server, "insp1")
    token = c.cookies.get("pp_session")
    csrf = c.get("/api/v1/me").json()["csrf_token"]
    c.post(
        f"/api/v1/alerts/{world.alert1}/actions",
        json={"action": "comment", "comment": "ok"},
        headers={"X-CSRF-Token": csrf},
    )
    httpx.post(
        f"{live_server.url}/api/v1/session", json={"user": "insp2", "password": "bad-" + PASSWORDS["insp2"]}
    )
    c.close()
    log = live_server.log_text()
    assert "login ok user=insp1" in log and '"GET /api/v1/me' in log
    # a failed login names the attempt by a keyed hash only (the name may be a mistyped password)
    assert "login failed user=" not in log and "user=insp2" not in log
    with world.conn() as conn:
        want = name_hash(load_key(conn), "insp2")
    assert f"login failed user_hash={want} known_user=yes" in log
    for secret in (PASSWORDS["insp1"], PASSWORDS["insp2"], token, csrf):
        assert secret and secret not in log


def test_sse_rows_are_html_escaped(live_server: LiveServer, world: World) -> None:
    c1 = _signed_in(live_server, "insp1")
    with c1.stream("GET", "/alerts/stream") as s1:
        lines = s1.iter_lines()
        assert next(lines).startswith("retry:")
        with world.conn() as conn:
            evil = fire_alert(conn, world, world.p1, "-xss", note='<img src=x onerror="alert(1)">')
        got = _next_alert(_events(lines))
        assert got["alert_id"] == evil
        assert "<img" not in str(got["html"]) and "&lt;img src=x onerror=" in str(got["html"])
    c1.close()


def test_feed_survives_the_listener_losing_its_database_connection(
    live_server: LiveServer, world: World
) -> None:
    c1 = _signed_in(live_server, "insp1")
    with c1.stream("GET", "/alerts/stream") as s1:
        events = _events(s1.iter_lines())
        with world.conn() as conn:
            killed = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query ILIKE 'LISTEN%%'"
            ).fetchall()
        assert killed == [(True,)], "exactly one LISTEN connection per console process"
        # the listener reconnects and tells the page to resync (notifications may have been missed)
        name, _ = next(events)
        assert name == "resync"
        with world.conn() as conn:
            after = fire_alert(conn, world, world.p1, "-after-reconnect")
        assert _next_alert(events)["alert_id"] == after
    c1.close()
