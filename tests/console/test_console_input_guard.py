"""NUL and other control characters are refused at the edge with 422 naming the field (issue 9:
a NUL in a login user name or a comment gave HTTP 500 from psycopg's DataError)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from console_testkit import PASSWORDS, World, login
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from fastapi.testclient import TestClient

from console import create_app
from console._input_guard import refuse_control_characters

AsUser = Callable[[str], tuple[TestClient, str]]
MakeClient = Callable[..., TestClient]


def _login_form_token(c: TestClient) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text)
    assert m
    return m.group(1)


@pytest.mark.parametrize("bad", ["ins\x00p1", "insp1\x00", "\x1b[31minsp1", "insp1\x7f"])
def test_control_character_in_login_user_name_is_422_naming_the_field(
    make_client: MakeClient, bad: str
) -> None:
    c = make_client()
    r = c.post("/api/v1/session", json={"user": bad, "password": PASSWORDS["insp1"]})
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["field"] == "user" and "control character" in problem["reason"]
    assert "\x00" not in problem["value"] and "\\x" in problem["value"]  # shown escaped
    r = c.post("/login", data={"user": bad, "password": PASSWORDS["insp1"], "csrf": _login_form_token(c)})
    assert r.status_code == 422 and "user" in r.text and "control character" in r.text
    assert "pp_session" not in r.headers.get("set-cookie", "")


def test_control_character_in_a_password_is_refused_without_echoing_it(make_client: MakeClient) -> None:
    c = make_client()
    secret = "Sec\x00ret-pass-123"
    r = c.post("/api/v1/session", json={"user": "insp1", "password": secret})
    assert r.status_code == 422
    assert r.json()["detail"] == [
        {"field": "password", "value": "***", "reason": r.json()["detail"][0]["reason"]}
    ]
    assert "Sec" not in r.text


def test_nul_in_a_comment_is_422_and_nothing_is_stored(client_as: AsUser, world: World) -> None:
    c, csrf = client_as("insp1")
    r = c.post(
        f"/alerts/{world.alert1}/act", data={"action": "comment", "comment": "bad\x00comment", "csrf": csrf}
    )
    assert r.status_code == 422 and "comment" in r.text and "U+0000" in r.text
    r = c.post(
        f"/api/v1/alerts/{world.alert1}/actions",
        json={"action": "comment", "comment": "x\x00y"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 422
    assert [p["field"] for p in r.json()["detail"]] == ["comment"]
    with world.conn() as conn:
        assert conn.execute("SELECT count(*) FROM alert_events WHERE actor = 'insp1'").fetchone() == (0,)
    # line breaks and tabs are text, not control characters to refuse
    r = c.post(
        f"/api/v1/alerts/{world.alert1}/actions",
        json={"action": "comment", "comment": "line 1\n\tline 2"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 200
    with world.conn() as conn:
        assert conn.execute("SELECT comment FROM alert_events WHERE actor = 'insp1'").fetchone() == (
            "line 1\n\tline 2",
        )


def test_control_characters_in_query_strings_and_json_keys(client_as: AsUser) -> None:
    c, csrf = client_as("insp1")
    r = c.get("/api/v1/alerts", params={"park": "p\x00"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "park"
    r = c.get("/alerts", params={"lang": "en", "x\x01": "1"})
    assert r.status_code == 422
    r = c.post(
        "/api/v1/alerts/1/actions",
        json={"action": "comment", "comment": "ok", "ex\x00tra": 1},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 422 and "ex\\x00tra" in r.json()["detail"][0]["field"]


def _api_routes() -> list[RouteContext]:
    """Every API route of the app, with its effective (router-combined) dependencies."""
    return [
        ctx for ctx in iter_route_contexts(create_app().routes) if isinstance(ctx.original_route, APIRoute)
    ]


def test_every_route_has_the_guard_first() -> None:
    routes = _api_routes()
    assert len(routes) >= 25
    for ctx in routes:
        calls = [d.call for d in ctx.dependant.dependencies]
        assert calls and calls[0] is refuse_control_characters, f"{ctx.path} runs without the guard first"


def _value(name: str) -> str:
    return f"{name}-\x00"


def test_no_route_reaches_the_database_with_a_nul(make_client: MakeClient, world: World) -> None:
    """Signed in as admin with a valid CSRF token, every route gets a NUL in every parameter it
    declares (query, form, JSON body, string path parameters): 422 each time, never 500."""
    c = make_client()
    csrf = login(c, "admin", PASSWORDS["admin"])
    checked = 0
    for route in _api_routes():
        dep = route.dependant
        path = str(route.path)
        for p in dep.path_params:
            sample = str(world.alert1) if p.name == "alert_id" else _value(p.name).replace("\x00", "%00")
            path = path.replace("{" + p.name + "}", sample)
        params = {p.alias: _value(p.alias) for p in dep.query_params}
        body_fields = list(dep.body_params)
        form = any(type(f.field_info).__name__ == "Form" for f in body_fields)
        kwargs: dict[str, Any] = {"params": params, "headers": {"X-CSRF-Token": csrf}}
        if body_fields and form:
            kwargs["data"] = {
                f.alias: (csrf + "\x00" if f.alias == "csrf" else _value(f.alias)) for f in body_fields
            }
        elif body_fields:
            model = body_fields[0].field_info.annotation
            fields = getattr(model, "model_fields", {})
            kwargs["json"] = {name: _value(name) for name in fields} or {"x": "\x00"}
        has_text = bool(params) or bool(body_fields) or "%00" in path
        if not has_text:
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            r = c.request(method, path, **kwargs)
            assert r.status_code == 422, (method, route.path, r.status_code, r.text[:300])
            checked += 1
    assert checked >= 15, f"only {checked} route(s) take text: the enumeration broke"
    assert c.get("/api/v1/me").status_code == 200  # still signed in: no route ran
    with world.conn() as conn:
        assert conn.execute("SELECT count(*) FROM alert_events WHERE actor <> 'system'").fetchone() == (0,)


def test_oversized_bodies_are_413_not_500(client_as: AsUser, world: World) -> None:
    c, csrf = client_as("insp1")
    big = "x" * (300 * 1024)
    r = c.post(
        "/api/v1/session",
        content=('{"user": "' + big + '", "password": "p"}').encode(),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413, r.status_code
    r = c.post(f"/alerts/{world.alert1}/act", data={"action": "comment", "comment": big, "csrf": csrf})
    assert r.status_code == 413, r.status_code
    r = c.request(
        "DELETE",
        "/api/v1/session",
        content=b'{"a": "' + big.encode() + b'"}',
        headers={"Content-Type": "application/json", "X-CSRF-Token": csrf},
    )
    assert r.status_code == 413, r.status_code
    assert c.get("/api/v1/me").status_code == 200
