"""Each channel against its local stand-in: the request format, DingTalk's signature, TLS on SMTP
(STARTTLS and implicit, a self-signed certificate made in the test), and secrets never in errors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import channel_specs
from notify_standins import DING_SECRET, SECRETS, SMTP_PASSWORD, WECOM_KEY, HttpStandIn, SmtpStandIn

from notify import Channel, OutMessage, dingtalk_sign, parse_channel, send_message
from notify.errors import DeliveryError

MSG = OutMessage(
    1,
    "pp-notify-1-1",
    "[严重] 排放超标 · 示范园区",
    "**华能锅炉厂**: NOx 超标\n[查看证据](https://c.example/alerts/7)",
    "li.wei@park.example",
    "zh",
)


def _send(ch: Channel, msg: OutMessage = MSG) -> str:
    async def go() -> str:
        async with httpx.AsyncClient(trust_env=False) as client:
            return await send_message(ch, msg, client)

    return asyncio.run(go())


def _channel(http: HttpStandIn, name: str, smtp: SmtpStandIn | None = None, **secrets: str) -> Channel:
    kind, config, sec = channel_specs(http, smtp)[name]
    return parse_channel(name, kind, config, sec | secrets)


def test_wecom_robot_gets_markdown_with_its_key(http_standin: HttpStandIn) -> None:
    assert _send(_channel(http_standin, "wecom-ops")) == "errcode 0"
    (r,) = http_standin.of("wecom")
    assert r.body["msgtype"] == "markdown"
    assert r.body["markdown"]["content"].startswith("## [严重] 排放超标")
    assert "https://c.example/alerts/7" in r.text


def test_wecom_wrong_key_is_an_error_without_the_key(http_standin: HttpStandIn) -> None:
    with pytest.raises(DeliveryError, match="errcode 40001") as e:
        _send(_channel(http_standin, "wecom-ops", key="wrongKey-Bb12"))
    assert "wrongKey-Bb12" not in str(e.value)


def test_dingtalk_signed_mode_passes_the_robots_check(http_standin: HttpStandIn) -> None:
    assert _send(_channel(http_standin, "ding-ops")) == "errcode 0"
    (r,) = http_standin.of("dingtalk")
    assert r.body["msgtype"] == "markdown" and r.body["markdown"]["title"] == MSG.title
    # a wrong secret gives a signature the robot refuses
    with pytest.raises(DeliveryError, match="sign not match") as e:
        _send(_channel(http_standin, "ding-ops", secret="SECwrong-Mm45"))
    assert "SECwrong-Mm45" not in str(e.value) and http_standin.rejected == ["dingtalk: sign not match"]


def test_dingtalk_sign_matches_an_independent_computation() -> None:
    import base64
    import hashlib
    import hmac

    ts = 1_700_000_000_000
    mac = hmac.new(DING_SECRET.encode(), f"{ts}\n{DING_SECRET}".encode(), hashlib.sha256).digest()
    assert dingtalk_sign(DING_SECRET, ts) == base64.b64encode(mac).decode()


def test_sms_adapter_fills_the_template(http_standin: HttpStandIn) -> None:
    msg = OutMessage(9, "pp-notify-3-9", "[CRITICAL] emission", "NOx above the limit", "+8613800000000", "en")
    assert _send(_channel(http_standin, "sms"), msg) == "HTTP 200"
    (r,) = http_standin.of("sms")
    assert r.body["mobile"] == "+8613800000000" and r.body["out_id"] == "pp-notify-3-9"
    assert r.text.startswith("[CRITICAL] emission\nNOx above")


def test_a_down_channel_error_echoing_the_secret_is_scrubbed(http_standin: HttpStandIn) -> None:
    http_standin.down = {"wecom", "dingtalk"}
    for name in ("wecom-ops", "ding-ops"):
        with pytest.raises(DeliveryError, match="HTTP 503") as e:
            _send(_channel(http_standin, name))
        assert not any(s in str(e.value) for s in SECRETS), str(e.value)
    assert "key=***" in str(_error(http_standin, "wecom-ops"))


def _error(http: HttpStandIn, name: str) -> Any:
    try:
        _send(_channel(http, name))
    except DeliveryError as exc:
        return exc
    return None


def test_unreachable_endpoint_is_a_delivery_error() -> None:
    ch = parse_channel("w", "wecom", {"url": "http://127.0.0.1:9/cgi-bin/webhook/send"}, {"key": WECOM_KEY})
    with pytest.raises(DeliveryError, match="ConnectError") as e:
        _send(ch)
    assert WECOM_KEY not in str(e.value)


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_smtp_over_tls_with_login(tmp_path: Path, http_standin: HttpStandIn, mode: str) -> None:
    smtp = SmtpStandIn(tmp_path, mode)
    try:
        kind, config, secrets = channel_specs(http_standin, smtp)["mail"]
        ch = parse_channel("mail", kind, config | {"tls": mode}, secrets)
        assert _send(ch) == "250"
        ((_, rcpt, m),) = smtp.messages
        assert rcpt == ["li.wei@park.example"]
        assert m["Subject"] == MSG.title and m["Message-ID"] == "<pp-notify-1-1@parkpulse>"
        assert "https://c.example/alerts/7" in m.get_body().get_content()  # type: ignore[attr-defined]
        # a wrong password: refused by the server, the password not in the error
        bad = parse_channel("mail", kind, config | {"tls": mode}, {"password": "wrongPw-Tt33"})
        with pytest.raises(DeliveryError, match="SMTPAuthenticationError") as e:
            _send(bad)
        assert "wrongPw-Tt33" not in str(e.value) and SMTP_PASSWORD not in str(e.value)
        # without the private CA the self-signed certificate is refused: no clear-text fallback
        untrusted = parse_channel("mail", kind, config | {"tls": mode, "ca_file": None}, secrets)
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            _send(untrusted)
        assert len(smtp.messages) == 1
    finally:
        smtp.close()
