"""Login lockouts and failed-login logging (issue 9): a failed login logs a keyed hash of the
attempted name, never the raw string (it may be a password typed into the user field); an
active lockout refuses even the right password by design, and an admin sees and lifts it on
/admin/lockouts or with `parkpulse users lockouts|unlock`."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import pytest
from console_testkit import PASSWORDS, World
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from console._login_names import load_key, name_hash
from console.cli import users_app

MakeClient = Callable[..., TestClient]
AsUser = Callable[[str], tuple[TestClient, str]]


def _cli(args: list[str], dsn: str) -> tuple[int, str]:
    res = CliRunner().invoke(users_app, args, env={"PARKPULSE_DATABASE_URL": dsn}, terminal_width=200)
    return res.exit_code, res.output


def _lock_out(c: TestClient, user: str, times: int = 2) -> None:
    for _ in range(times):
        assert (
            c.post("/api/v1/session", json={"user": user, "password": "wrong-guess-123"}).status_code == 401
        )
    r = c.post("/api/v1/session", json={"user": user, "password": PASSWORDS[user]})
    assert r.status_code == 429, "an active lockout refuses even the right password (by design)"


def test_password_typed_as_user_name_is_neither_logged_nor_stored(
    make_client: MakeClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    c = make_client()
    typed = PASSWORDS["insp1"]  # the password, typed into the user-name field
    for body in ({"user": typed, "password": typed}, {"user": typed.lower(), "password": ""}):
        assert c.post("/api/v1/session", json=body).status_code == 401
    assert c.post("/api/v1/session", json={"user": "insp2", "password": "wrong-guess-123"}).status_code == 401
    with world.conn() as conn:
        key = load_key(conn)
        keys = [r[0] for r in conn.execute("SELECT key FROM console_login_failures").fetchall()]
    text = caplog.text
    assert typed not in text and typed.lower() not in text and "user=insp2" not in text
    assert (
        f"login failed user_hash={name_hash(key, typed.lower())} known_user=no" in text
    )  # routes lower-case
    assert f"login failed user_hash={name_hash(key, 'insp2')} known_user=yes" in text
    assert all(typed.lower() not in k for k in keys), keys
    assert f"name#{name_hash(key, typed.lower())}" in keys and "user:insp2" in keys


def test_hash_is_keyed_per_install(world: World) -> None:
    import hashlib

    with world.conn() as conn:
        key = load_key(conn)
    assert len(key) >= 16
    assert name_hash(key, "insp1") != hashlib.sha256(b"insp1").hexdigest()[:12]
    assert name_hash(key, "insp1") == name_hash(key, "insp1") != name_hash(key, "insp2")


def test_admin_sees_and_lifts_a_lockout_on_the_page(
    make_client: MakeClient, client_as: AsUser, world: World
) -> None:
    victim = make_client(throttle_user_free=2, throttle_base_s=600.0, throttle_ip_free=100)
    _lock_out(victim, "insp1")
    admin, csrf = client_as("admin")
    page = admin.get("/admin/lockouts")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert 'data-key="user:insp1"' in page.text and "insp1" in page.text
    with world.conn() as conn:
        assert name_hash(load_key(conn), "insp1") in page.text  # matches the failed-login log lines
    assert 'id="nav-lockouts"' in admin.get("/alerts").text
    # not for other roles, and not without the CSRF token
    inspector, insp_csrf = client_as("insp2")
    assert inspector.get("/admin/lockouts").status_code == 403
    assert 'id="nav-lockouts"' not in inspector.get("/alerts").text
    assert (
        inspector.post("/admin/lockouts/unlock", data={"key": "user:insp1", "csrf": insp_csrf}).status_code
        == 403
    )
    assert admin.post("/admin/lockouts/unlock", data={"key": "user:insp1"}).status_code == 403
    assert admin.post("/admin/lockouts/unlock", data={"key": "user:x'; --", "csrf": csrf}).status_code == 422
    assert (
        victim.post("/api/v1/session", json={"user": "insp1", "password": PASSWORDS["insp1"]}).status_code
        == 429
    )
    r = admin.post("/admin/lockouts/unlock", data={"key": "user:insp1", "csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/admin/lockouts?done=1"
    assert 'id="lockout-lifted"' in admin.get(r.headers["location"]).text
    assert (
        victim.post("/api/v1/session", json={"user": "insp1", "password": PASSWORDS["insp1"]}).status_code
        == 200
    )


def test_users_lockouts_and_unlock_cli(make_client: MakeClient, world: World) -> None:
    c = make_client(throttle_user_free=2, throttle_base_s=600.0, throttle_ip_free=100)
    _lock_out(c, "mgr1")
    code, out = _cli(["lockouts"], world.dsn)
    with world.conn() as conn:
        h = name_hash(load_key(conn), "mgr1")
    assert code == 0 and "mgr1" in out and h in out and re.search(r"mgr1 .*LOCKED for (59\d|600) s", out), out
    code, out = _cli(["unlock", "mgr1"], world.dsn)
    assert code == 0 and "lockout lifted for user mgr1" in out
    assert c.post("/api/v1/session", json={"user": "mgr1", "password": PASSWORDS["mgr1"]}).status_code == 200
    code, out = _cli(["unlock", "mgr1"], world.dsn)
    assert code == 0 and "no failed logins recorded" in out
    # an address lockout, lifted by --address
    c2 = make_client(throttle_user_free=100, throttle_ip_free=2, throttle_base_s=600.0)
    for i in range(2):
        c2.post("/api/v1/session", json={"user": f"guess{i}", "password": "x" * 12})
    assert c2.post("/api/v1/session", json={"user": "op1", "password": PASSWORDS["op1"]}).status_code == 429
    code, out = _cli(["lockouts"], world.dsn)
    assert "testclient" in out and "guess0" not in out
    assert _cli(["unlock", "--address", "testclient"], world.dsn)[0] == 0
    assert c2.post("/api/v1/session", json={"user": "op1", "password": PASSWORDS["op1"]}).status_code == 200
    code, out = _cli(["unlock"], world.dsn)
    assert code == 2 and "user:" in out
