"""Helpers and fixtures of the console tests (conftest.py re-exports the fixtures): a seeded park
pair, users of every role, a TestClient and a
real uvicorn server (`parkpulse console serve` as a child process)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, sync_playwright

from console import ConsoleSettings, create_app
from console.accounts import add_user
from parkpulse.services import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "console"

# Each passes the password policy: no user name inside, not common (console/_passwords.py).
PASSWORDS = {
    "admin": "Vq8!-root-Zlk2w",
    "insp1": "Kx7#-east-Pvq2w",
    "insp2": "Wm3$-west-Rtb9y",
    "mgr1": "Tt5%-boss-Jnw4e",
    "op1": "Hh9&-chem-Qsd7u",
}


@dataclass
class World:
    dsn: str
    p1: str
    p2: str
    f1: str
    f2: str
    gw1: str
    gw2: str
    alert1: int = 0  # park 1, firm 1, NOx exceedance
    alert2: int = 0  # park 2, firm 2, NOx exceedance
    passwords: dict[str, str] = field(default_factory=lambda: dict(PASSWORDS))

    def conn(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True)


FIRE = """SELECT pp_alert_fire(%(rule)s, 1, 'emission', 'critical', %(park)s, %(firm)s, %(gw)s, 'cems-1',
          'nox_mg_m3', %(subject)s, %(value)s, 100, 'mg/m³', %(zh)s, %(en)s, %(evidence)s::jsonb, now())"""


def fire_alert(
    conn: psycopg.Connection,
    w: World,
    park: str,
    subject_suffix: str = "",
    value: float = 182.5,
    note: str = "",
) -> int:
    """Raise an alert the way the alert engine does (its SQL function pp_alert_fire)."""
    firm, gw = (w.f1, w.gw1) if park == w.p1 else (w.f2, w.gw2)
    row = conn.execute(
        FIRE,
        {
            "rule": "emission-nox-hourly",
            "park": park,
            "firm": firm,
            "gw": gw,
            "subject": f"{gw}/cems-1/nox_mg_m3{subject_suffix}",
            "value": value,
            "zh": f"氮氧化物小时均值 {value} mg/m³ 超过限值 100{note}",
            "en": f"NOx hourly average {value} mg/m³ above limit 100{note}",
            "evidence": json.dumps(
                {
                    "valid_minutes": 52,
                    "excluded_by": {"M": 3, "C": 2},
                    "o2_ref": 3.5,
                    "avg_o2": 6.1,
                    "hour": "2026-01-01T08:00:00+00:00",
                    "limit_source": "GB 13271-2014 表2",
                    "minutes": [
                        {
                            "t": f"2026-01-01T08:{m:02d}:00+00:00",
                            "measured": 140.0 + m,
                            "o2": 6.0,
                            "flag": "M" if m in (3, 4, 5) else "N",
                            "converted": 175.0 + m,
                            "valid": m not in (3, 4, 5),
                            "reason": "flag M (maintenance)" if m in (3, 4, 5) else None,
                        }
                        for m in range(60)
                    ],
                },
                ensure_ascii=False,
            ),
        },
    ).fetchone()
    assert row is not None
    return int(row[0])


def seed(dsn: str, uid: str) -> World:
    w = World(
        dsn=dsn,
        p1=f"{uid}-p1",
        p2=f"{uid}-p2",
        f1=f"{uid}-f1",
        f2=f"{uid}-f2",
        gw1=f"{uid}-g1",
        gw2=f"{uid}-g2",
    )
    with w.conn() as conn:
        for park, firm, gw, zh, en in (
            (w.p1, w.f1, w.gw1, "东园区", "East park"),
            (w.p2, w.f2, w.gw2, "西园区", "West park"),
        ):
            conn.execute("INSERT INTO parks (park_id, name, name_en) VALUES (%s, %s, %s)", (park, zh, en))
            conn.execute(
                "INSERT INTO firms (firm_id, park_id, name, name_en, land_mu, industry) VALUES (%s, %s, %s, %s, 80, 'chemicals')",
                (firm, park, f"{zh}化工有限公司", f"{en} Chemicals Ltd"),
            )
            conn.execute("INSERT INTO gateways (gateway_id, firm_id) VALUES (%s, %s)", (gw, firm))
            conn.execute(
                "INSERT INTO devices (gateway_id, device_id, kind, source_type, poll_interval_s) "
                "VALUES (%s, 'cems-1', 'cems', 'gas_boiler', 60)",
                (gw,),
            )
            conn.execute(
                "INSERT INTO devices (gateway_id, device_id, kind, meter_level, carrier, poll_interval_s) "
                "VALUES (%s, 'meter-1', 'meter', 1, 'electricity', 60)",
                (gw,),
            )
        # minute NOx readings for the last 3 hours, above the limit in the last hour, and an energy counter
        conn.execute(
            """WITH m AS (SELECT metric_id FROM metrics WHERE name = 'nox_mg_m3'),
                    d AS (SELECT device_pk FROM v_devices WHERE device_id = 'cems-1' AND park_id = ANY(%s))
               INSERT INTO readings (device_pk, metric_id, ts, value, quality)
               SELECT d.device_pk, m.metric_id, date_trunc('minute', now()) - make_interval(mins => i),
                      CASE WHEN i < 60 THEN 150 + (i %% 7) * 5 ELSE 60 + (i %% 5) END,
                      CASE WHEN i %% 29 = 0 THEN 3 ELSE 0 END
               FROM d, m, generate_series(0, 180) AS i""",
            ([w.p1, w.p2],),
        )
        conn.execute(
            """WITH m AS (SELECT metric_id FROM metrics WHERE name = 'elec_import_kwh'),
                    d AS (SELECT device_pk FROM v_devices WHERE device_id = 'meter-1' AND park_id = ANY(%s))
               INSERT INTO readings (device_pk, metric_id, ts, value, quality)
               SELECT d.device_pk, m.metric_id, now() - make_interval(hours => i), 100000 - i * 120.5, 0
               FROM d, m, generate_series(0, 72) AS i""",
            ([w.p1, w.p2],),
        )
        conn.execute(
            "INSERT INTO rollup_dirty (bucket) SELECT DISTINCT date_bin('15 minutes', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') FROM readings"
        )
        conn.execute("SELECT pp_refresh_rollups()")
        conn.execute(
            """INSERT INTO device_status (device_pk, last_ts, received_at, last_quality, readings)
               SELECT device_pk, now() - interval '30 seconds', now() - interval '28 seconds', 0, 181 FROM v_devices"""
        )
        conn.execute(  # poll health as ingest stores it from the gateway's status (issue 5)
            """INSERT INTO device_health (device_pk, poll_lag_ms_last, poll_lag_ms_p99, overruns, timeouts, exceptions, reported_at)
               SELECT device_pk, 7.25, 123.5, 0, 2, 0, now() - interval '10 seconds' FROM v_devices
               WHERE device_id = 'meter-1' AND park_id = ANY(%s)""",
            ([w.p1, w.p2],),
        )
        for gw, depth in ((w.gw1, 0), (w.gw2, 42)):
            conn.execute(
                "INSERT INTO gateway_status (gateway_id, state, spool_depth, last_seq, version) VALUES (%s, 'online', %s, 900, '0.1.0')",
                (gw, depth),
            )
            conn.execute(
                "INSERT INTO data_gaps (gateway_id, device_id, metric, start_ts, end_ts, count, reason, source) "
                "VALUES (%s, 'cems-1', 'nox_mg_m3', now() - interval '2 hours', now() - interval '110 minutes', 10, %s, 'gateway')",
                (gw, f"uplink outage at {gw}"),
            )
        w.alert1 = fire_alert(conn, w, w.p1)
        w.alert2 = fire_alert(conn, w, w.p2)
    users = [
        ("admin", "admin", [], [], "系统管理员"),
        ("insp1", "inspector", [w.p1], [], "张监察"),
        ("insp2", "inspector", [w.p2], [], "李监察"),
        ("mgr1", "park_manager", [w.p1], [], None),
        ("op1", "operator", [], [w.f1], None),
    ]
    with psycopg.connect(dsn) as conn:
        if not _HASHES:  # the first world goes through add_user; later ones reuse its argon2 hashes (speed)
            for name, role, parks, firms, display in users:
                add_user(conn, name, PASSWORDS[name], role, parks=parks, firms=firms, display_name=display)
            _HASHES.update(conn.execute("SELECT user_name, password_hash FROM console_users").fetchall())
        else:
            for name, role, parks, firms, display in users:
                conn.execute(
                    "INSERT INTO console_users (user_name, display_name, password_hash) VALUES (%s, %s, %s)",
                    (name, display, _HASHES[name]),
                )
                for park in parks or [None]:
                    conn.execute(
                        "INSERT INTO console_roles (user_name, role, park_id, firm_id) VALUES (%s, %s, %s, %s)",
                        (name, role, park, firms[0] if firms else None),
                    )
    return w


_HASHES: dict[str, str] = {}


@pytest.fixture
def world(db: str, unique_id: str) -> World:
    return seed(db, unique_id)


def make_settings(dsn: str, **kw: object) -> ConsoleSettings:
    return ConsoleSettings(database_url=dsn, **kw)  # type: ignore[arg-type]


@pytest.fixture
def make_client(world: World) -> Iterator[Callable[..., TestClient]]:
    """TestClient factory (https base URL so Secure cookies are sent, as a browser would)."""
    made: list[TestClient] = []

    def make(**settings: object) -> TestClient:
        c = TestClient(
            create_app(make_settings(world.dsn, **settings)),
            base_url="https://testserver",
            follow_redirects=False,
        )
        c.__enter__()
        made.append(c)
        return c

    yield make
    for c in made:
        c.__exit__(None, None, None)


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def login(client: TestClient, user: str, password: str) -> str:
    """Sign in through the login form; returns the session CSRF token."""
    page = client.get("/login")
    token = _CSRF.search(page.text)
    assert token, "login form has a CSRF field"
    resp = client.post(
        "/login", data={"user": user, "password": password, "csrf": token.group(1), "next": "/alerts"}
    )
    assert resp.status_code == 303, resp.text[:500]
    alerts = client.get("/alerts")
    assert alerts.status_code == 200
    m = _CSRF.search(alerts.text)
    assert m
    return m.group(1)


@pytest.fixture
def client_as(
    make_client: Callable[..., TestClient], world: World
) -> Callable[[str], tuple[TestClient, str]]:
    def as_user(user: str) -> tuple[TestClient, str]:
        c = make_client()
        return c, login(c, user, world.passwords[user])

    return as_user


@dataclass
class LiveServer:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextmanager
def serve_console(world: World, tmp_path: Path, **env: str) -> Iterator[LiveServer]:
    """`parkpulse console serve` on a free port (extra PARKPULSE_CONSOLE_* settings in env)."""
    port = free_port()
    log_path = tmp_path / f"console-{port}.log"
    full_env = {
        **os.environ,
        "PARKPULSE_DATABASE_URL": world.dsn,
        "PARKPULSE_CONSOLE_COOKIE_SECURE": "false",
        "PARKPULSE_CONSOLE_SSE_KEEPALIVE_S": "2",
        **env,
    }
    with log_path.open("wb") as logf:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "parkpulse.cli",
                "console",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "debug",
            ],
            env=full_env,
            stdout=logf,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        if not wait_port("127.0.0.1", port, timeout=30):
            raise AssertionError(f"console did not start:\n{log_path.read_text(errors='replace')}")
        yield LiveServer(f"http://127.0.0.1:{port}", proc, log_path)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def live_server(world: World, tmp_path: Path) -> Iterator[LiveServer]:
    """`parkpulse console serve` on a free port, cookies without Secure (plain http on localhost)."""
    with serve_console(world, tmp_path) as server:
        yield server


def screenshot_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def wait_for() -> Callable[..., object]:
    def wait(pred: Callable[[], object], timeout: float = 10.0, step: float = 0.1) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = pred()
            if got:
                return got
            time.sleep(step)
        raise AssertionError("condition not met in time")

    return wait


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's Chromium driven by Playwright (its own browser download is not used)."""
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("Debian's chromium is required for the browser tests (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
