"""Security: anonymous access, scope between parks, CSRF, SQL injection, throttling, sessions, logs."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

import pytest
from console_testkit import PASSWORDS, World, login
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from console import create_app
from console.app import PUBLIC_ROUTES

AsUser = Callable[[str], tuple[TestClient, str]]
MakeClient = Callable[..., TestClient]


def _declared() -> list[tuple[str, set[str]]]:
    """(path, methods) of every route of the app, including those of included routers."""
    out = []
    for ctx in iter_route_contexts(create_app().routes):
        route = ctx.original_route
        if isinstance(route, Mount):
            assert ctx.path == "/static", f"unexpected mount {ctx.path}: cover it in this test"
            continue  # CSS and JS only
        assert isinstance(route, (APIRoute, Route)), route
        assert ctx.path is not None
        out.append((ctx.path, set(ctx.methods or ())))
    return out


def _routes(world: World) -> list[tuple[str, str]]:
    """Every (method, concrete path) of the app, path parameters filled with real ids."""
    samples = {
        "alert_id": str(world.alert1),
        "firm_id": world.f1,
        "fmt": "xlsx",
        "gateway_id": world.gw1,
        "version": "1",
    }
    found: list[tuple[str, str]] = []
    for path, methods in _declared():
        for name in re.findall(r"{(\w+)(?::\w+)?}", path):
            assert name in samples, f"new path parameter {name!r} in {path}: add a sample to this test"
            path = re.sub("{" + name + r"(?::\w+)?}", samples[name], path)
        found.extend((m, path) for m in sorted(methods) if m != "HEAD")
    return found


def test_every_route_refuses_anonymous_access(make_client: MakeClient, world: World) -> None:
    client = make_client()
    routes = _routes(world)
    declared = {(m, path) for path, methods in _declared() for m in methods}
    assert declared >= PUBLIC_ROUTES, "the public allow-list names routes that no longer exist"
    checked = 0
    for method, path in routes:
        if (method, path) in PUBLIC_ROUTES:
            continue
        resp = client.request(
            method,
            path,
            data={"csrf": "x", "action": "comment", "comment": "x"}
            if method == "POST" and not path.startswith("/api/")
            else None,
            json={"action": "comment", "comment": "x"}
            if path.startswith("/api/") and method != "GET"
            else None,
        )
        if path.startswith("/api/") or path.endswith("/stream") or method != "GET":
            assert resp.status_code == 401, (method, path, resp.status_code)
        else:
            assert resp.status_code == 303 and resp.headers["location"].startswith("/login"), (
                method,
                path,
                resp.status_code,
            )
        assert world.f1 not in resp.text and "氮氧化物" not in resp.text
        checked += 1
    assert checked >= 20, f"only {checked} routes found: enumeration broke"
    # nothing anonymous changed an alert
    with world.conn() as conn:
        assert conn.execute("SELECT count(*) FROM alert_events WHERE actor <> 'system'").fetchone() == (0,)


def test_public_routes_are_only_login_and_liveness(make_client: MakeClient) -> None:
    c = make_client()
    assert c.get("/healthz").json()["status"] in ("ok", "degraded")
    assert "csrf" in c.get("/login").text
    assert c.get("/static/console.css").status_code == 200


def test_inspector_of_one_park_sees_nothing_of_another(client_as: AsUser, world: World) -> None:
    c, csrf = client_as("insp1")
    other = world.alert2
    # own park works (positive control)
    assert c.get(f"/alerts/{world.alert1}").status_code == 200
    assert c.get(f"/firms/{world.f1}").status_code == 200
    # the other park's alert, evidence, CSV, API and firm: not found
    for path in (
        f"/alerts/{other}",
        f"/alerts/{other}/evidence.csv",
        f"/api/v1/alerts/{other}",
        f"/api/v1/alerts/{other}/readings",
        f"/firms/{world.f2}",
        f"/api/v1/firms/{world.f2}",
    ):
        r = c.get(path)
        assert r.status_code == 404, path
        assert world.p2 not in r.text.replace(world.f2, "") and "西园区" not in r.text, path
    r = c.post(f"/alerts/{other}/act", data={"action": "acknowledge", "csrf": csrf})
    assert r.status_code == 404
    r = c.post(
        f"/api/v1/alerts/{other}/actions",
        json={"action": "comment", "comment": "x"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 404
    # lists, even when filtered to the other park explicitly
    assert c.get(f"/api/v1/alerts?park={world.p2}&state=all").json() == []
    assert {a["park_id"] for a in c.get("/api/v1/alerts?state=all").json()} == {world.p1}
    page = c.get(f"/alerts?park={world.p2}&state=all")
    assert f"alert-{other}" not in page.text and "西园区" not in page.text
    assert [f["firm_id"] for f in c.get("/api/v1/firms").json()] == [world.f1]
    assert world.f2 not in c.get("/firms").text
    for kind in ("gateways", "devices", "gaps"):
        rows = c.get(f"/api/v1/health/{kind}").json()
        assert rows and all(r["gateway_id"] == world.gw1 for r in rows), kind
    assert world.gw2 not in c.get("/health").text
    with world.conn() as conn:
        assert conn.execute("SELECT state FROM alerts WHERE alert_id = %s", (other,)).fetchone() == (
            "firing",
        )
        assert conn.execute("SELECT count(*) FROM alert_events WHERE alert_id = %s", (other,)).fetchone() == (
            1,
        )


def test_operator_sees_only_their_firm(client_as: AsUser, world: World) -> None:
    c, _ = client_as("op1")
    assert [a["alert_id"] for a in c.get("/api/v1/alerts?state=all").json()] == [world.alert1]
    assert c.get(f"/firms/{world.f2}").status_code == 404


def test_csrf_missing_or_wrong_is_refused(client_as: AsUser, world: World) -> None:
    c, csrf = client_as("insp1")
    url = f"/alerts/{world.alert1}/act"
    assert c.post(url, data={"action": "acknowledge"}).status_code == 403
    assert c.post(url, data={"action": "acknowledge", "csrf": "forged" + csrf[6:]}).status_code == 403
    assert (
        c.post(
            url, data={"action": "acknowledge", "csrf": csrf}, headers={"Origin": "https://evil.example"}
        ).status_code
        == 403
    )
    api = f"/api/v1/alerts/{world.alert1}/actions"
    assert c.post(api, json={"action": "acknowledge"}).status_code == 403
    assert c.post(api, json={"action": "acknowledge"}, headers={"X-CSRF-Token": "nope"}).status_code == 403
    assert c.post("/logout", data={}).status_code == 403
    assert c.delete("/api/v1/session").status_code == 403
    with world.conn() as conn:
        assert conn.execute("SELECT state FROM alerts WHERE alert_id = %s", (world.alert1,)).fetchone() == (
            "firing",
        )
        assert conn.execute("SELECT count(*) FROM alert_events WHERE actor <> 'system'").fetchone() == (0,)
    # still signed in: the refused logout did nothing
    assert c.get("/alerts").status_code == 200
    # another user's token is not accepted either
    _, other_csrf = client_as("mgr1")
    assert c.post(url, data={"action": "acknowledge", "csrf": other_csrf}).status_code == 403


def test_login_form_needs_its_csrf_token(make_client: MakeClient) -> None:
    c = make_client()
    r = c.post("/login", data={"user": "insp1", "password": PASSWORDS["insp1"], "csrf": "x"})
    assert r.status_code == 403 and "pp_session" not in r.headers.get("set-cookie", "")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/alerts?park=' OR 1=1 --",
        "/api/v1/alerts?firm=x'%3B DROP TABLE alerts%3B--",
        "/api/v1/alerts?metric=nox_mg_m3' OR '1'='1",
        "/api/v1/alerts?state=open' OR 'a'='a",
        "/api/v1/alerts?kind=emission) OR (1=1",
        "/api/v1/alerts/1 OR 1=1",
        "/api/v1/alerts/1;DELETE FROM alerts",
        "/api/v1/firms/x' OR '1'='1",
        "/alerts?park=%27%20OR%201%3D1--",
        "/alerts/0x1",
        "/firms/f1'--",
        "/api/v1/alerts?limit=1;DROP TABLE alerts",
    ],
)
def test_sql_injection_in_filters_and_ids_is_refused(client_as: AsUser, world: World, path: str) -> None:
    c, _ = client_as("insp1")
    r = c.get(path)
    assert r.status_code in (404, 422), (path, r.status_code)
    if r.status_code == 422 and path.startswith("/api/"):
        assert r.json()["detail"][0]["field"]  # names the field
    with world.conn() as conn:
        assert conn.execute("SELECT count(*) FROM alerts").fetchone() == (2,)


def test_injection_text_in_a_comment_is_stored_as_text(client_as: AsUser, world: World) -> None:
    c, csrf = client_as("insp1")
    evil = "'); DROP TABLE alerts; -- <script>alert(1)</script>"
    r = c.post(f"/alerts/{world.alert1}/act", data={"action": "comment", "comment": evil, "csrf": csrf})
    assert r.status_code == 303
    page = c.get(f"/alerts/{world.alert1}")
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;" in page.text
    with world.conn() as conn:
        assert conn.execute("SELECT comment FROM alert_events WHERE actor = 'insp1'").fetchone() == (evil,)
        assert conn.execute("SELECT count(*) FROM alerts").fetchone() == (2,)


def test_login_user_field_injection_is_harmless(make_client: MakeClient) -> None:
    c = make_client()
    r = c.post("/api/v1/session", json={"user": "' OR '1'='1' --", "password": "' OR '1'='1"})
    assert r.status_code == 401


def test_login_throttled_per_user_with_backoff(make_client: MakeClient, world: World) -> None:
    c = make_client(throttle_user_free=3, throttle_base_s=1.0, throttle_ip_free=100)
    for _ in range(3):
        assert (
            c.post("/api/v1/session", json={"user": "insp1", "password": "wrong-password"}).status_code == 401
        )
    r = c.post("/api/v1/session", json={"user": "insp1", "password": PASSWORDS["insp1"]})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1  # even the right password waits
    # another user from the same address is not affected by insp1's lock
    assert (
        c.post("/api/v1/session", json={"user": "insp2", "password": PASSWORDS["insp2"]}).status_code == 200
    )
    time.sleep(1.2)
    assert (
        c.post("/api/v1/session", json={"user": "insp1", "password": PASSWORDS["insp1"]}).status_code == 200
    )
    with world.conn() as conn:
        assert conn.execute(
            "SELECT count(*) FROM console_login_failures WHERE key = 'user:insp1'"
        ).fetchone() == (0,)


def test_login_throttled_per_address_across_user_names(make_client: MakeClient) -> None:
    c = make_client(throttle_user_free=100, throttle_ip_free=4, throttle_base_s=30.0)
    for i in range(4):
        assert c.post("/api/v1/session", json={"user": f"guess{i}", "password": "x" * 12}).status_code == 401
    r = c.post("/api/v1/session", json={"user": "insp1", "password": PASSWORDS["insp1"]})
    assert r.status_code == 429 and 25 <= int(r.headers["Retry-After"]) <= 31
    page = c.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    r = c.post("/login", data={"user": "insp1", "password": PASSWORDS["insp1"], "csrf": token.group(1)})
    assert r.status_code == 429 and ("请在" in r.text)


def test_session_cookie_flags_and_server_side_logout(make_client: MakeClient, world: World) -> None:
    c = make_client()
    r = c.post("/api/v1/session", json={"user": "insp1", "password": PASSWORDS["insp1"]})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=lax" in cookie
    token = c.cookies.get("pp_session")
    assert token and len(token) >= 40
    csrf = r.json()["csrf_token"]
    with world.conn() as conn:
        stored = conn.execute("SELECT token_sha256::text FROM console_sessions").fetchall()
        assert stored and all(token not in s[0] for s in stored)
    replay = make_client()
    replay.cookies.set("pp_session", token)
    assert (
        replay.get("/api/v1/me").json()["user"] == "insp1"
    )  # the stolen-cookie replay works while signed in
    assert c.delete("/api/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert (
        replay.get("/api/v1/me").status_code == 401
    )  # and not after sign-out: the session is gone server-side


def test_insecure_cookie_setting_for_local_http(make_client: MakeClient) -> None:
    c = make_client(cookie_secure=False)
    r = c.post("/api/v1/session", json={"user": "insp1", "password": PASSWORDS["insp1"]})
    assert r.status_code == 200 and "secure" not in r.headers["set-cookie"].lower()


def test_disabling_a_user_ends_their_sessions(client_as: AsUser, world: World) -> None:
    import psycopg

    from console.accounts import disable_user

    c, _ = client_as("insp1")
    assert c.get("/api/v1/me").status_code == 200
    with psycopg.connect(world.dsn) as conn:
        assert disable_user(conn, "insp1") == 1
    assert c.get("/api/v1/me").status_code == 401
    assert (
        c.post("/api/v1/session", json={"user": "insp1", "password": PASSWORDS["insp1"]}).status_code == 401
    )


def test_no_open_redirect_after_login(make_client: MakeClient) -> None:
    c = make_client()
    page = c.get("/login?next=//evil.example/x")
    assert "//evil.example" not in page.text
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    r = c.post(
        "/login",
        data={
            "user": "insp1",
            "password": PASSWORDS["insp1"],
            "csrf": token.group(1),
            "next": "https://evil.example/",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == "/alerts"


def test_security_headers(client_as: AsUser) -> None:
    c, _ = client_as("insp1")
    r = c.get("/alerts")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"


def test_api_responses_are_never_cached(client_as: AsUser, world: World, make_client: MakeClient) -> None:
    """Issue 9: API JSON responses carried no Cache-Control, so a shared cache could keep them."""
    c, csrf = client_as("insp1")
    for path in (
        "/api/v1/me",
        "/api/v1/alerts?state=all",
        f"/api/v1/alerts/{world.alert1}",
        f"/api/v1/alerts/{world.alert1}/readings",
        "/api/v1/firms",
        f"/api/v1/firms/{world.f1}",
        "/api/v1/health/gateways",
        "/api/v1/health/devices",
        "/api/v1/health/gaps",
        "/api/v1/openapi.json",
        f"/api/v1/alerts/{world.alert2}",
        "/api/v1/alerts?limit=0",
        f"/alerts/{world.alert1}/evidence.csv",
        "/healthz",
    ):
        r = c.get(path)
        assert r.headers.get("cache-control") == "no-store", (
            path,
            r.status_code,
            r.headers.get("cache-control"),
        )
    r = c.post(
        f"/api/v1/alerts/{world.alert1}/actions",
        json={"action": "comment", "comment": "x"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    anon = make_client()
    r = anon.post("/api/v1/session", json={"user": "insp1", "password": PASSWORDS["insp1"]})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"  # carries the CSRF token
    assert anon.get("/api/v1/me").headers["cache-control"] == "no-store"
    assert "no-store" not in c.get("/static/console.css").headers.get("cache-control", "")


def test_secrets_never_appear_in_logs(
    make_client: MakeClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    c = make_client()
    csrf = login(c, "insp1", PASSWORDS["insp1"])
    token = c.cookies.get("pp_session")
    c.post(f"/alerts/{world.alert1}/act", data={"action": "acknowledge", "csrf": csrf})
    c.post("/api/v1/session", json={"user": "insp2", "password": "wrong-" + PASSWORDS["insp2"]})
    c.post("/api/v1/session", json={"user": "mgr1", "password": PASSWORDS["mgr1"]})
    api_token = c.cookies.get("pp_session")
    c.get("/api/v1/me")
    text = caplog.text
    assert "login ok user=insp1" in text and "login failed user_hash=" in text  # the logs did capture
    assert "user=insp2" not in text
    for secret in (PASSWORDS["insp1"], PASSWORDS["insp2"], PASSWORDS["mgr1"], token, api_token, csrf):
        assert secret and secret not in text
