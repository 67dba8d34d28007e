"""/api/v1 for managed gateways (console/_fleet_api.py) through the console's test client, with the
users of every role of tests/console (admin, inspectors of park 1 and 2, the park 1 manager, an
operator of firm 1). The router is added to the app here as console/app.py will."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from console_testkit import World, login, make_settings
from fastapi.testclient import TestClient
from platform_testkit import config

from console import create_app
from console._fleet_api import router

AsUser = Callable[[str], tuple[TestClient, str]]


@pytest.fixture
def fleet_as(world: World) -> Iterator[AsUser]:
    made: list[TestClient] = []

    def as_user(user: str) -> tuple[TestClient, str]:
        app = create_app(make_settings(world.dsn))
        app.include_router(router)
        c = TestClient(app, base_url="https://testserver", follow_redirects=False)
        c.__enter__()
        made.append(c)
        return c, login(c, user, world.passwords[user])

    yield as_user
    for c in made:
        c.__exit__(None, None, None)


def _put(c: TestClient, csrf: str, gw: str, body: dict[str, Any]) -> Any:
    return c.put(f"/api/v1/gateways/{gw}/config", json=body, headers={"X-CSRF-Token": csrf})


def test_operator_edits_its_firms_gateway_and_history_diff_rollback(fleet_as: AsUser, world: World) -> None:
    c, csrf = fleet_as("op1")
    assert c.get(f"/api/v1/gateways/{world.gw1}/config").status_code == 404  # none yet
    r = _put(c, csrf, world.gw1, {"config": config(), "reason": "first managed config"})
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["created_by"]) == (1, "op1")
    assert r.json()["profiles"] == {"modbus": ["eastron-sdm630"]}
    yaml_text = r.json()["yaml"].replace("interval_s: 5", "interval_s: 20")
    r = _put(c, csrf, world.gw1, {"yaml": yaml_text, "reason": "slower"})
    assert r.status_code == 200 and r.json()["version"] == 2
    got = c.get(f"/api/v1/gateways/{world.gw1}/config").json()
    assert got["version"] == 2 and got["config"]["devices"][0]["interval_s"] == 20
    hist = c.get(f"/api/v1/gateways/{world.gw1}/config/history").json()
    assert [(h["version"], h["created_by"], h["reason"]) for h in hist] == [
        (2, "op1", "slower"),
        (1, "op1", "first managed config"),
    ]
    d = c.get(f"/api/v1/gateways/{world.gw1}/config/diff").json()
    assert (d["from"], d["to"]) == (1, 2) and "+  interval_s: 20" in d["diff"]
    r = c.post(
        f"/api/v1/gateways/{world.gw1}/config/rollback",
        json={"version": 1, "reason": "undo"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 200 and (r.json()["version"], r.json()["rollback_of"]) == (3, 1)
    assert c.get(f"/api/v1/gateways/{world.gw1}/config/versions/3").json()["config"] == config()
    assert c.get(f"/api/v1/gateways/{world.gw1}/config/versions/9").status_code == 404


def test_invalid_config_gets_422_with_every_problem(fleet_as: AsUser, world: World) -> None:
    c, csrf = fleet_as("mgr1")
    bad = config({"id": "pump", "profile": "nope"}, log_level="LOUD", spool={"path": "/x"})
    r = _put(c, csrf, world.gw1, {"config": bad, "reason": "x"})
    assert r.status_code == 422
    problems = {(p["path"], p["value"]) for p in r.json()["problems"]}
    assert {
        ("spool", "{'path': '/x'}"),
        ("log_level", "'LOUD'"),
        ("devices[1].profile", "'nope'"),
    } <= problems
    r = _put(c, csrf, world.gw1, {"yaml": "devices: [", "reason": "x"})
    assert r.status_code == 422 and r.json()["problems"][0]["path"] == "yaml"
    r = _put(c, csrf, world.gw1, {"reason": "x"})
    assert r.status_code == 422 and "exactly one" in r.json()["problems"][0]["reason"]
    assert c.get(f"/api/v1/gateways/{world.gw1}/config/history").json() == []


def test_scope_roles_and_csrf(fleet_as: AsUser, world: World) -> None:
    op, op_csrf = fleet_as("op1")
    body = {"config": config(), "reason": "x"}
    assert _put(op, op_csrf, world.gw2, body).status_code == 404  # another firm: not in scope
    assert op.put(f"/api/v1/gateways/{world.gw1}/config", json=body).status_code == 403  # no CSRF header
    insp, insp_csrf = fleet_as("insp1")
    r = _put(insp, insp_csrf, world.gw1, body)
    assert r.status_code == 403 and "operator" in r.json()["detail"]  # inspectors look, they do not edit
    mgr, mgr_csrf = fleet_as("mgr1")
    assert _put(mgr, mgr_csrf, world.gw2, body).status_code == 404  # park 2 is not the manager's
    assert _put(mgr, mgr_csrf, world.gw1, body).status_code == 200
    adm, adm_csrf = fleet_as("admin")
    assert _put(adm, adm_csrf, world.gw2, body).status_code == 200
    assert insp.get(f"/api/v1/gateways/{world.gw1}/config").json()["created_by"] == "mgr1"


def test_fleet_list_with_filters_and_drift(fleet_as: AsUser, world: World) -> None:
    adm, csrf = fleet_as("admin")
    assert _put(adm, csrf, world.gw1, {"config": config(), "reason": "x"}).status_code == 200
    with world.conn() as conn:
        conn.execute(
            "UPDATE gateway_status SET config_mode = 'managed', config_applied_version = NULL WHERE gateway_id = %s",
            (world.gw1,),
        )
    rows = {r["gateway_id"]: r for r in adm.get("/api/v1/gateways/fleet").json()}
    assert set(rows) == {world.gw1, world.gw2}
    g1 = rows[world.gw1]
    assert (g1["mode"], g1["desired_version"], g1["applied_version"], g1["drift"]) == (
        "managed",
        1,
        None,
        True,
    )
    # the two seeded devices report; the config's meter `incomer`, registered by the push, has not yet
    assert g1["state"] == "online" and (g1["devices_ok"], g1["devices_failing"]) == (2, 1)
    assert [r["gateway_id"] for r in adm.get("/api/v1/gateways/fleet?state=drift").json()] == [world.gw1]
    assert [r["gateway_id"] for r in adm.get(f"/api/v1/gateways/fleet?park={world.p2}").json()] == [world.gw2]
    op, _ = fleet_as("op1")
    assert [r["gateway_id"] for r in op.get("/api/v1/gateways/fleet").json()] == [world.gw1]
    assert adm.get("/api/v1/gateways/fleet?state=bogus").status_code == 422
