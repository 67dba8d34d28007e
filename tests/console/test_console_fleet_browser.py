"""The fleet pages in a real browser: Playwright (sync API) on Debian's Chromium against the
console served by uvicorn as a child process, on a real migrated PostgreSQL, writing through the
real `fleet` library.

An operator adds a DL/T 645 meter from the library with the edit form, sees the YAML editor's
errors with their paths, and rolls back behind the confirmation page; an inspector reads the
fleet on a phone-sized screen (no sideways scrolling, the drifted gateway marked, read-only).
Screenshots go to test-artifacts/console/ (gitignored).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from console_testkit import PASSWORDS, World, screenshot_dir, serve_console
from fleet_testkit import desired, fleet_world, history, report_status, store_config
from playwright.sync_api import Browser, Page, expect

__all__ = ["fleet_world"]  # a fixture, imported so pytest finds it

pytestmark = pytest.mark.browser


@pytest.fixture
def fleet_server(fleet_world: World, tmp_path: Path) -> Iterator[str]:
    """`parkpulse console serve` (the fleet pages are part of the app) on the fleet world."""
    with serve_console(fleet_world, tmp_path) as server:
        yield server.url


def _login(page: Page, url: str, user: str) -> None:
    page.goto(f"{url}/login?next=/fleet")
    page.fill("#user", user)
    page.fill("#password", PASSWORDS[user])
    page.click("#login-submit")
    page.wait_for_url(f"{url}/fleet")


def _shot(page: Page, name: str) -> None:
    path = screenshot_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5000


def test_operator_adds_a_meter_sees_errors_and_rolls_back(
    fleet_server: str, fleet_world: World, browser: Browser
) -> None:
    w = fleet_world
    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
    _login(page, fleet_server, "op1")
    page.goto(f"{fleet_server}/fleet?lang=en")
    page.click(f"#gw-{w.gw1} a.mono")
    page.click("#edit-link")
    page.fill("#meter-id", "ws3-pump")
    page.select_option("#meter-bus", "dlt645:meters-485")
    page.fill("#meter-unit", "000012345678")
    page.select_option("#meter-profile", "dlt645:dlt645-2007-generic")
    page.fill("#meter-interval", "30")
    page.fill("#meter-reason", "add meter ws3-pump")
    _shot(page, "fleet-edit-form")
    page.click("#meter-submit")
    page.wait_for_url(f"{fleet_server}/fleet/{w.gw1}?done=saved")
    expect(page.locator("#done")).to_be_visible()
    expect(page.locator("#desired-yaml")).to_contain_text("ws3-pump")
    expect(page.locator("#v-2 .who")).to_have_text("op1")
    expect(page.locator("#v-2 .why")).to_contain_text("add meter ws3-pump")
    now = desired(w.dsn, w.gw1)
    assert now is not None and now.config["dlt645_meters"][0]["address"] == "000012345678"

    # the raw YAML editor: two broken devices, both named with their paths, nothing stored
    page.click("#edit-link")
    text = page.input_value("#yaml-text")
    broken = text.replace("profile: acrel-adl400", "profile: no-such-meter").replace(
        "bus: lan", "bus: nowhere", 1
    )
    page.fill("#yaml-text", broken)
    page.fill("#yaml-reason", "try a broken edit")
    page.click("#yaml-submit")
    problems = page.locator("#problems")
    expect(problems).to_be_visible()
    expect(problems).to_contain_text("devices[0].bus")
    expect(problems).to_contain_text("devices[0].profile")
    expect(problems).to_contain_text("devices[1].profile")
    assert "no-such-meter" in page.input_value("#yaml-text")  # the text is kept for fixing
    _shot(page, "fleet-yaml-errors")
    assert len(history(w.dsn, w.gw1)) == 2

    # rollback to version 1: the confirmation page shows what changes and wants a reason
    page.goto(f"{fleet_server}/fleet/{w.gw1}")
    page.click("#v-1 a.rollback-link")
    expect(page.locator("#diff")).to_contain_text("ws3-pump")
    page.fill("#rollback-reason", "meter not installed yet")
    page.check("#rollback-confirm")
    _shot(page, "fleet-rollback-confirm")
    page.click("#rollback-submit")
    page.wait_for_url(f"{fleet_server}/fleet/{w.gw1}?done=rolled_back")
    expect(page.locator("#v-3 .why")).to_contain_text("meter not installed yet")
    versions = history(w.dsn, w.gw1)
    assert versions[0].version == 3 and versions[0].config == versions[-1].config
    page.close()


def test_inspector_reads_the_fleet_on_a_phone(
    fleet_server: str, fleet_world: World, browser: Browser
) -> None:
    w = fleet_world
    report_status(w.dsn, w.gw1, applied=1)
    config = desired(w.dsn, w.gw1)
    assert config is not None
    changed = {
        **config.config,
        "devices": [{**config.config["devices"][0], "interval_s": 60}, *config.config["devices"][1:]],
    }
    store_config(w.dsn, w.gw1, changed, by="op1", reason="slower incomer")  # version 2: gateway 1 now drifts
    page = browser.new_page(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    _login(page, fleet_server, "insp1")
    row = page.locator(f"#gw-{w.gw1}")
    expect(row.locator(".badge.drift")).to_be_visible()
    expect(row.locator(".desired-version")).to_have_text("2")
    expect(row.locator(".applied-version")).to_have_text("1")
    expect(page.locator(f"#gw-{w.gw2}")).to_have_count(0)  # park 2 is not the inspector's
    sideways = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert sideways <= 1, f"the fleet page scrolls sideways by {sideways}px on a phone"
    _shot(page, "fleet-phone")
    row.locator("a.mono").click()
    expect(page.locator("#read-only")).to_be_visible()
    expect(page.locator("#edit-link")).to_have_count(0)
    expect(page.locator("#drift-mark")).to_be_visible()
    sideways = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert sideways <= 1, f"the gateway page scrolls sideways by {sideways}px on a phone"
    _shot(page, "fleet-gateway-phone")
    page.close()
