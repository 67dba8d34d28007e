"""The console's fleet pages against a real migrated PostgreSQL and the real `fleet` library (its
validation is the gateway's own validator): scope, rights, CSRF, the edit forms, the YAML
editor's errors with their paths, history, diff, rollback, drift, and secrets never shown."""

from __future__ import annotations

import re
from collections.abc import Callable
from html import unescape

from console_testkit import World
from fastapi.testclient import TestClient
from fleet_testkit import (
    BASE_CONFIG,
    MQTT_PASSWORD,
    URL_PASSWORD,
    desired,
    fleet_client,
    fleet_world,
    form_tokens,
    history,
    report_status,
)

import fleet

__all__ = ["fleet_client", "fleet_world"]  # fixtures, imported so pytest finds them

Client = Callable[[str], TestClient]


def _rows(page: str) -> set[str]:
    return set(re.findall(r'<tr id="gw-([a-z0-9-]+)"', page))


def _edit(c: TestClient, gw: str) -> tuple[str, str]:
    page = c.get(f"/fleet/{gw}/edit")
    assert page.status_code == 200, page.text[:300]
    return form_tokens(page.text)


def test_fleet_page_shows_the_scope_desired_against_applied_and_marks_drift(
    fleet_client: Client, fleet_world: World
) -> None:
    w = fleet_world
    report_status(w.dsn, w.gw1, applied=1)
    report_status(w.dsn, w.gw2, applied=1)
    admin = fleet_client("admin")
    _, base = _edit(admin, w.gw1)
    csrf, _ = _edit(admin, w.gw1)
    resp = admin.post(
        f"/fleet/{w.gw1}/device",
        data={
            "device": "modbus:incomer",
            "interval_s": "15",
            "csrf": csrf,
            "reason": "slower",
            "base_version": base,
        },
    )
    assert resp.status_code == 303, resp.text[:2000]
    page = admin.get("/fleet").text
    assert _rows(page) == {w.gw1, w.gw2}
    row1 = page.split(f'id="gw-{w.gw1}"')[1].split("</tr>")[0]
    row2 = page.split(f'id="gw-{w.gw2}"')[1].split("</tr>")[0]
    assert "drift" in page.split(f'id="gw-{w.gw1}"')[1][:40]  # the row's class
    assert 'class="badge drift"' in row1 and 'class="badge drift"' not in row2
    assert re.search(r'desired-version">2<', row1) and re.search(r'applied-version">1<', row1)
    assert re.search(r'desired-version">1<', row2) and re.search(r'applied-version">1<', row2)
    assert ">42<" in row2  # gateway 2's spool depth
    assert _rows(admin.get("/fleet", params={"drift": "1"}).text) == {w.gw1}
    assert _rows(admin.get("/fleet", params={"park": w.p2}).text) == {w.gw2}
    assert _rows(admin.get("/fleet", params={"firm": w.f1}).text) == {w.gw1}
    assert _rows(admin.get("/fleet", params={"state": "offline"}).text) == set()
    assert _rows(admin.get("/fleet", params={"state": "online"}).text) == {w.gw1, w.gw2}
    assert admin.get("/fleet", params={"state": "sideways"}).status_code == 422
    # an inspector of park 1 and the operator of firm 1 see gateway 1 only
    assert _rows(fleet_client("insp1").get("/fleet").text) == {w.gw1}
    assert _rows(fleet_client("op1").get("/fleet").text) == {w.gw1}


def test_out_of_scope_is_404_only_firm_operators_park_managers_and_admins_edit_and_csrf_holds(
    fleet_client: Client, fleet_world: World
) -> None:
    w = fleet_world
    insp1, insp2, op1, mgr1 = (fleet_client(u) for u in ("insp1", "insp2", "op1", "mgr1"))
    for path in ("", "/edit", "/diff?b=1", "/rollback?to=1"):
        assert insp2.get(f"/fleet/{w.gw1}{path}").status_code == 404, path
        assert op1.get(f"/fleet/{w.gw2}{path}").status_code == 404, path
    page = insp1.get(f"/fleet/{w.gw1}")
    assert page.status_code == 200 and 'id="read-only"' in page.text and "/edit" not in page.text
    assert insp1.get(f"/fleet/{w.gw1}/edit").status_code == 403
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    refused = insp1.post(
        f"/fleet/{w.gw1}/yaml",
        data={"yaml": "buses: []\n", "csrf": csrf.group(1), "reason": "try", "base_version": "1"},
    )
    assert refused.status_code == 403 and w.f1 in refused.text
    assert insp1.post(f"/fleet/{w.gw1}/rollback", data={"to": "1", "csrf": csrf.group(1)}).status_code == 403
    for editor in (op1, mgr1):
        assert 'id="edit-link"' in editor.get(f"/fleet/{w.gw1}").text
        assert editor.get(f"/fleet/{w.gw1}/edit").status_code == 200
    _csrf_refusals(fleet_client, w)
    assert len(history(w.dsn, w.gw1)) == 1  # nothing was stored by the refused writes


def _csrf_refusals(fleet_client: Client, w: World) -> None:
    """A write without the session's CSRF token, or from another site, is refused."""
    op1 = fleet_client("op1")
    _, base = _edit(op1, w.gw1)
    for token in ("", "forged-token"):
        resp = op1.post(
            f"/fleet/{w.gw1}/device",
            data={
                "device": "modbus:incomer",
                "enabled": "off",
                "csrf": token,
                "reason": "x",
                "base_version": base,
            },
        )
        assert resp.status_code == 403
    csrf, _ = _edit(op1, w.gw1)
    cross_site = op1.post(
        f"/fleet/{w.gw1}/device",
        data={
            "device": "modbus:incomer",
            "enabled": "off",
            "csrf": csrf,
            "reason": "x",
            "base_version": base,
        },
        headers={"Origin": "https://evil.example"},
    )
    assert cross_site.status_code == 403
    assert len(history(w.dsn, w.gw1)) == 1


def test_add_meter_form_stores_a_new_version_with_who_and_why(
    fleet_client: Client, fleet_world: World
) -> None:
    w = fleet_world
    op1 = fleet_client("op1")
    page = op1.get(f"/fleet/{w.gw1}/edit").text
    assert (
        'value="modbus:acrel-adl400"' in page and 'value="dlt645:dlt645-2007-generic"' in page
    )  # the library
    assert 'value="dlt645:meters-485"' in page and 'value="modbus:lan"' in page  # the config's buses
    csrf, base = form_tokens(page)
    resp = op1.post(
        f"/fleet/{w.gw1}/meter",
        data={
            "meter_id": "ws3-pump",
            "bus": "dlt645:meters-485",
            "unit": "000012345678",
            "profile": "dlt645:dlt645-2007-generic",
            "interval_s": "30",
            "csrf": csrf,
            "reason": "add meter ws3-pump",
            "base_version": base,
        },
    )
    assert resp.status_code == 303 and resp.headers["location"] == f"/fleet/{w.gw1}?done=saved"
    now = desired(w.dsn, w.gw1)
    assert (
        now is not None
        and now.version == 2
        and now.created_by == "op1"
        and now.reason == "add meter ws3-pump"
    )
    assert now.config["dlt645_meters"] == [
        {
            "id": "ws3-pump",
            "bus": "meters-485",
            "address": "000012345678",
            "profile": "dlt645-2007-generic",
            "interval_s": 30,
        }
    ]
    assert "dlt645-2007-generic" in now.profiles["dlt645"]  # the library profile is frozen with it
    shown = op1.get(resp.headers["location"]).text
    assert 'id="done"' in shown and "ws3-pump" in shown
    v2 = shown.split('id="v-2"')[1].split("</tr>")[0]
    assert "op1" in v2 and "add meter ws3-pump" in v2
    # a Modbus meter on the same form
    csrf, base = _edit(op1, w.gw1)
    resp = op1.post(
        f"/fleet/{w.gw1}/meter",
        data={
            "meter_id": "compressor",
            "bus": "modbus:lan",
            "unit": "7",
            "profile": "modbus:acrel-adl400",
            "csrf": csrf,
            "reason": "compressor meter",
            "base_version": base,
        },
    )
    assert resp.status_code == 303
    now = desired(w.dsn, w.gw1)
    assert now is not None and now.config["devices"][-1] == {
        "id": "compressor",
        "bus": "lan",
        "device_id": 7,
        "profile": "acrel-adl400",
    }


def _problems(page: str) -> list[tuple[str, str]]:
    block = page.split('id="problems"')[1].split("</ul>")[0]
    return [
        (unescape(p), unescape(v))
        for p, v in re.findall(r'<code class="path">([^<]*)</code>.*?<code>([^<]*)</code>', block)
    ]


def test_form_errors_name_every_field_and_store_nothing(fleet_client: Client, fleet_world: World) -> None:
    w = fleet_world
    op1 = fleet_client("op1")
    csrf, base = _edit(op1, w.gw1)
    resp = op1.post(
        f"/fleet/{w.gw1}/meter",
        data={
            "meter_id": "x1",
            "bus": "modbus:lan",
            "unit": "abc",
            "profile": "dlt645:dlt645-2007-generic",
            "interval_s": "-3",
            "csrf": csrf,
            "reason": "",
            "base_version": base,
        },
    )
    assert resp.status_code == 422
    paths = [p for p, _ in _problems(resp.text)]
    assert set(paths) == {"reason", "meter.unit", "meter.profile", "meter.interval_s"}, paths
    assert 'value="x1"' in resp.text  # the form keeps what was typed
    # the gateway's own validator: a unit id out of range
    resp = op1.post(
        f"/fleet/{w.gw1}/meter",
        data={
            "meter_id": "x2",
            "bus": "modbus:lan",
            "unit": "999",
            "profile": "modbus:acrel-adl400",
            "csrf": csrf,
            "reason": "r",
            "base_version": base,
        },
    )
    assert resp.status_code == 422
    assert dict(_problems(resp.text)) == {"devices[2].device_id": "999"}
    # … and its cross-checks, every one: the id and the unit of meter "incomer" are taken
    resp = op1.post(
        f"/fleet/{w.gw1}/meter",
        data={
            "meter_id": "incomer",
            "bus": "modbus:lan",
            "unit": "1",
            "profile": "modbus:acrel-adl400",
            "csrf": csrf,
            "reason": "dup",
            "base_version": base,
        },
    )
    assert resp.status_code == 422
    assert {"devices[2].id", "devices[2].device_id"} <= {p for p, _ in _problems(resp.text)}, resp.text[
        -3000:
    ]
    assert len(history(w.dsn, w.gw1)) == 1


def test_yaml_editor_reports_every_problem_with_its_path(fleet_client: Client, fleet_world: World) -> None:
    w = fleet_world
    op1 = fleet_client("op1")
    csrf, base = _edit(op1, w.gw1)
    bad = (
        "buses:\n  - {name: lan, type: tcp, host: 127.0.0.1}\n"
        "devices:\n"
        "  - {id: a1, bus: lan, device_id: 1, profile: no-such-profile}\n"
        "  - {id: a2, bus: nowhere, device_id: 2, profile: acrel-adl400}\n"
        "uplink: {url: 'mqtt://elsewhere:1883'}\n"
    )
    resp = op1.post(
        f"/fleet/{w.gw1}/yaml", data={"yaml": bad, "csrf": csrf, "reason": "r", "base_version": base}
    )
    assert resp.status_code == 422
    paths = {p for p, _ in _problems(resp.text)}
    assert "uplink" in paths, paths  # a local-only key is refused first
    resp = op1.post(
        f"/fleet/{w.gw1}/yaml",
        data={
            "yaml": bad.replace("uplink: {url: 'mqtt://elsewhere:1883'}\n", ""),
            "csrf": csrf,
            "reason": "r",
            "base_version": base,
        },
    )
    assert resp.status_code == 422
    paths = {p for p, _ in _problems(resp.text)}
    assert {"devices[0].profile", "devices[1].bus"} <= paths, paths
    assert "no-such-profile" in resp.text  # the editor keeps the text
    syntax = op1.post(
        f"/fleet/{w.gw1}/yaml",
        data={"yaml": "devices: [1, 2\n", "csrf": csrf, "reason": "r", "base_version": base},
    )
    assert syntax.status_code == 422 and "line" in syntax.text
    assert [p for p, _ in _problems(syntax.text)] == ["yaml"]
    assert len(history(w.dsn, w.gw1)) == 1


def test_secrets_are_never_shown_and_kept_when_saved_back_masked(
    fleet_client: Client, fleet_world: World
) -> None:
    w = fleet_world
    op1 = fleet_client("op1")
    pages = [
        op1.get(f"/fleet/{w.gw1}").text,
        op1.get(f"/fleet/{w.gw1}/edit").text,
        op1.get(f"/fleet/{w.gw1}/diff?b=1").text,
    ]
    for page in pages:
        assert MQTT_PASSWORD not in page and URL_PASSWORD not in page
    edit = pages[1]
    text = unescape(edit.split('id="yaml-text"')[1].split(">", 1)[1].split("</textarea>")[0])
    assert fleet.MASK in text and "plantuser:***@" in text
    csrf, base = form_tokens(edit)
    text = text.replace("interval_s: 10", "interval_s: 20")
    resp = op1.post(
        f"/fleet/{w.gw1}/yaml",
        data={"yaml": text, "csrf": csrf, "reason": "slower feed", "base_version": base},
    )
    assert resp.status_code == 303, resp.text[:3000]
    now = desired(w.dsn, w.gw1)
    assert now is not None and now.version == 2
    assert now.config["mqtt"][0]["password"] == MQTT_PASSWORD  # kept, not saved as the mask
    assert now.config["mqtt"][0]["url"] == BASE_CONFIG["mqtt"][0]["url"]
    assert now.config["devices"][1]["interval_s"] == 20
    diff = op1.get(f"/fleet/{w.gw1}/diff?a=1&b=2").text
    assert "interval_s: 20" in unescape(diff) and MQTT_PASSWORD not in diff and URL_PASSWORD not in diff


def test_change_device_interval_and_switch_it_off(fleet_client: Client, fleet_world: World) -> None:
    w = fleet_world
    mgr1 = fleet_client("mgr1")  # a park manager of park 1 may edit its gateways
    csrf, base = _edit(mgr1, w.gw1)
    resp = mgr1.post(
        f"/fleet/{w.gw1}/device",
        data={
            "device": "modbus:boiler-feed",
            "interval_s": "60",
            "enabled": "off",
            "csrf": csrf,
            "reason": "boiler out of service",
            "base_version": base,
        },
    )
    assert resp.status_code == 303, resp.text[:2000]
    now = desired(w.dsn, w.gw1)
    assert now is not None
    feed = next(d for d in now.config["devices"] if d["id"] == "boiler-feed")
    assert feed["interval_s"] == 60 and feed["enabled"] is False and now.created_by == "mgr1"
    page = mgr1.get(f"/fleet/{w.gw1}/edit").text
    row = page.split('id="dev-modbus-boiler-feed"')[1].split("</tr>")[0]
    assert 'class="disabled"' in page.split('id="dev-modbus-boiler-feed"')[1][:30] and ">60<" in row
    nothing = mgr1.post(
        f"/fleet/{w.gw1}/device",
        data={"device": "modbus:boiler-feed", "csrf": csrf, "reason": "r", "base_version": "2"},
    )
    assert nothing.status_code == 422 and "nothing to change" in nothing.text


def test_a_stale_editor_is_refused_with_409(fleet_client: Client, fleet_world: World) -> None:
    w = fleet_world
    op1, mgr1 = fleet_client("op1"), fleet_client("mgr1")
    csrf_op, base = _edit(op1, w.gw1)
    csrf_mgr, _ = _edit(mgr1, w.gw1)
    first = mgr1.post(
        f"/fleet/{w.gw1}/device",
        data={
            "device": "modbus:incomer",
            "interval_s": "2",
            "csrf": csrf_mgr,
            "reason": "faster",
            "base_version": base,
        },
    )
    assert first.status_code == 303
    late = op1.post(
        f"/fleet/{w.gw1}/device",
        data={
            "device": "modbus:incomer",
            "enabled": "off",
            "csrf": csrf_op,
            "reason": "off",
            "base_version": base,
        },
    )
    assert late.status_code == 409 and "mgr1" in late.text
    now = desired(w.dsn, w.gw1)
    assert now is not None and now.version == 2 and now.config["devices"][0].get("enabled", True) is True


def test_rollback_needs_confirmation_and_a_reason_and_restores_the_content(
    fleet_client: Client, fleet_world: World
) -> None:
    w = fleet_world
    op1 = fleet_client("op1")
    csrf, base = _edit(op1, w.gw1)
    op1.post(
        f"/fleet/{w.gw1}/device",
        data={
            "device": "modbus:incomer",
            "enabled": "off",
            "csrf": csrf,
            "reason": "meter removed",
            "base_version": base,
        },
    )
    gw_page = op1.get(f"/fleet/{w.gw1}").text
    assert f'href="/fleet/{w.gw1}/rollback?to=1"' in gw_page
    confirm = op1.get(f"/fleet/{w.gw1}/rollback?to=1")
    assert confirm.status_code == 200
    assert "enabled: false" in unescape(confirm.text)  # the diff of what the rollback changes
    assert MQTT_PASSWORD not in confirm.text
    csrf, base = form_tokens(confirm.text)
    assert base == "2"
    unconfirmed = op1.post(
        f"/fleet/{w.gw1}/rollback", data={"to": "1", "csrf": csrf, "reason": "", "base_version": base}
    )
    assert unconfirmed.status_code == 422
    assert {p for p, _ in _problems(unconfirmed.text)} == {"reason", "confirm"}
    done = op1.post(
        f"/fleet/{w.gw1}/rollback",
        data={"to": "1", "csrf": csrf, "reason": "meter is back", "base_version": base, "confirm": "yes"},
    )
    assert done.status_code == 303 and done.headers["location"].endswith("done=rolled_back")
    versions = history(w.dsn, w.gw1)
    assert [v.version for v in versions] == [3, 2, 1]
    assert versions[0].config == versions[2].config and versions[0].sha256 == versions[2].sha256
    assert (
        versions[0].rollback_of == 1
        and versions[0].created_by == "op1"
        and versions[0].reason == "meter is back"
    )
    assert op1.get(f"/fleet/{w.gw1}/rollback?to=9").status_code == 404
    diff = op1.get(f"/fleet/{w.gw1}/diff?b=3").text  # against version 2 by default
    assert "enabled: false" in unescape(diff)


def test_a_gateway_without_a_stored_config_gets_its_first_version_from_the_yaml_editor(
    fleet_client: Client, fleet_world: World
) -> None:
    w = fleet_world
    fresh = f"{w.gw1}-new"
    with w.conn() as conn:
        conn.execute("INSERT INTO gateways (gateway_id, firm_id) VALUES (%s, %s)", (fresh, w.f1))
    op1 = fleet_client("op1")
    row = op1.get("/fleet").text.split(f'id="gw-{fresh}"')[1].split("</tr>")[0]
    assert "desired-version" not in row  # never managed: no versions to compare
    page = op1.get(f"/fleet/{fresh}/edit").text
    assert 'id="meter-form"' not in page  # no bus to add a meter to yet
    csrf, base = form_tokens(page)
    assert base == ""
    text = "buses:\n- {name: lan, type: tcp, host: 127.0.0.1}\ndevices:\n- {id: m1, bus: lan, device_id: 1, profile: acrel-adl400}\n"
    resp = op1.post(
        f"/fleet/{fresh}/yaml", data={"yaml": text, "csrf": csrf, "reason": "take over", "base_version": base}
    )
    assert resp.status_code == 303, resp.text[-2000:]
    now = desired(w.dsn, fresh)
    assert now is not None and now.version == 1 and now.config["devices"][0]["id"] == "m1"
    assert 'id="meter-form"' in op1.get(f"/fleet/{fresh}/edit").text
