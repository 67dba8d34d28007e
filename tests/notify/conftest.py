"""Fixtures of the notification tests: the channel stand-ins and a small park with users."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from notify_standins import (
    DING_SECRET,
    DING_TOKEN,
    SMS_KEY,
    SMTP_PASSWORD,
    WECOM_KEY,
    HttpStandIn,
    SmtpStandIn,
)

from notify import NotifyService, NotifySettings, add_channel, add_contact, add_subscription, parse_channel


@pytest.fixture
def http_standin() -> Iterator[HttpStandIn]:
    s = HttpStandIn()
    yield s
    s.close()


@pytest.fixture
def smtp_standin(tmp_path: Path) -> Iterator[SmtpStandIn]:
    s = SmtpStandIn(tmp_path, "starttls")
    yield s
    s.close()


def channel_specs(
    http: HttpStandIn, smtp: SmtpStandIn | None
) -> dict[str, tuple[str, dict[str, Any], dict[str, str]]]:
    specs: dict[str, tuple[str, dict[str, Any], dict[str, str]]] = {
        "wecom-ops": ("wecom", {"url": f"{http.base}/cgi-bin/webhook/send"}, {"key": WECOM_KEY}),
        "ding-ops": (
            "dingtalk",
            {"url": f"{http.base}/robot/send"},
            {"access_token": DING_TOKEN, "secret": DING_SECRET},
        ),
        "sms": (
            "sms",
            {
                "url": f"{http.base}/sms/send",
                "headers": {"Authorization": "Bearer $secret_api_key"},
                "body": {
                    "mobile": "$phone",
                    "template_code": "PP_ALERT",
                    "params": {"text": "$text"},
                    "out_id": "$idempotency_key",
                },
                "success_field": "code",
                "success_value": "OK",
            },
            {"api_key": SMS_KEY},
        ),
    }
    if smtp is not None:
        specs["mail"] = (
            "email",
            {
                "host": "127.0.0.1",
                "port": smtp.port,
                "tls": "starttls",
                "username": "alerts",
                "from_addr": "alerts@park.example",
                "ca_file": str(smtp.cert),
                "timeout_s": 5.0,
            },
            {"password": SMTP_PASSWORD},
        )
    return specs


def setup_park(
    dsn: str, park: str, specs: dict[str, tuple[str, dict[str, Any], dict[str, str]]]
) -> dict[str, int]:
    """A park with one firm, an inspector (li.wei, zh) and an operator; one contact per channel:
    li.wei by e-mail and SMS, the WeCom and DingTalk robots as groups. Returns contact ids."""
    contacts: dict[str, int] = {}
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO parks (park_id, name, name_en) VALUES (%s, '示范园区', 'Demo Park')", (park,)
        )
        conn.execute(
            "INSERT INTO firms (firm_id, park_id, name, name_en, land_mu) VALUES (%s, %s, '华能锅炉厂', 'Huaneng Boilers', 10)",
            (f"{park}-f1", park),
        )
        for user, role, scope in (("li.wei", "inspector", park), ("op.zhang", "operator", None)):
            conn.execute("INSERT INTO console_users (user_name, password_hash) VALUES (%s, 'x')", (user,))
            conn.execute(
                "INSERT INTO console_roles (user_name, role, park_id, firm_id) VALUES (%s, %s, %s, %s)",
                (user, role, scope, None if scope else f"{park}-f1"),
            )
        for cid, (kind, config, secrets) in specs.items():
            add_channel(conn, parse_channel(cid, kind, config, secrets))
            if kind == "email":
                contacts[cid] = add_contact(
                    conn, channel_id=cid, user_name="li.wei", address="li.wei@park.example"
                )
            elif kind == "sms":
                contacts[cid] = add_contact(
                    conn, channel_id=cid, user_name="li.wei", address="+8613800000000", language="en"
                )
            else:
                contacts[cid] = add_contact(conn, channel_id=cid, label=f"{cid} group")
                add_subscription(conn, contact_id=contacts[cid], park_id=park)
        add_subscription(conn, role="inspector", park_id=park)
    return contacts


def fire(
    dsn: str, park: str, n: int, *, kind: str = "emission", severity: str = "warning", start: int = 0
) -> list[int]:
    """Raise n alerts (each its own subject) through the alert engine's own function."""
    ids = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(start, start + n):
            row = conn.execute(
                """SELECT pp_alert_fire(%s, 1, %s, %s, %s, %s, 'gw-1', %s, 'nox_mg_m3', %s, 45.0, 30.0, 'mg/m3',
                                        %s, %s, '{}'::jsonb)""",
                (
                    f"rule-{kind}",
                    kind,
                    severity,
                    park,
                    f"{park}-f1",
                    f"stack-{i}",
                    f"gw-1/stack-{i}/nox",
                    f"NOx 45 mg/m³ 超过限值 30 (烟囱 {i})",
                    f"NOx 45 mg/m³ above the limit 30 (stack {i})",
                ),
            ).fetchone()
            ids.append(int(row[0]) if row else 0)
    return ids


def settings(dsn: str, **kw: Any) -> NotifySettings:
    base: dict[str, Any] = {
        "database_url": dsn,
        "console_url": "https://console.park.example",
        "start": "beginning",
        "poll_s": 0.05,
        "group_window_s": 0.0,
        "backoff_base_s": 0.1,
        "backoff_max_s": 0.5,
        "lease_s": 5.0,
    }
    return NotifySettings(**(base | kw))


def run_service(s: NotifySettings, until: Callable[[], bool], timeout: float = 20.0) -> NotifyService:
    """Run the service in this thread until `until()` holds (checked every 50 ms) or the timeout."""
    svc = NotifyService(s)

    async def main() -> None:
        task = asyncio.ensure_future(svc.run())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until():
            await asyncio.sleep(0.05)
        svc.stop.set()
        await asyncio.wait_for(task, 15)

    asyncio.run(main())
    return svc
