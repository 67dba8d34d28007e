"""Sending one message on one channel: SMTP (STARTTLS or implicit TLS), the WeCom group robot,
the DingTalk custom robot (signed mode) and a provider-neutral SMS HTTP adapter.

Apprise 2.3 was looked at for these: its WeCom and DingTalk plugins post to the vendors' fixed
hosts (so they cannot be pointed at a local stand-in), its e-mail plugin can only verify TLS
against the system's CAs or not at all (no private CA), and it reports a bool, not why a send
failed. So these are written here, each a few lines over httpx / smtplib.

Every failure is a DeliveryError whose text has the channel's secrets masked.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import smtplib
import ssl
import string
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import httpx

from notify._channels import Channel, DingtalkConfig, EmailConfig, SmsConfig, WecomConfig, scrub_secrets
from notify._facts import fact_value
from notify.errors import DeliveryError
from parkpulse.redact import redact_text

__all__ = ["OutMessage", "dingtalk_sign", "send_message", "truncate_bytes"]


@dataclass(frozen=True)
class OutMessage:
    message_id: int
    idempotency_key: str
    title: str
    body: str  # light markdown: headings, bullets, [text](url) links
    address: str | None
    language: str


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The DingTalk 加签 signature, base64 (the query encoding is left to the HTTP client):
    HMAC-SHA256 keyed with the secret over "<timestamp>\\n<secret>" (data/channel_facts.yaml)."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def truncate_bytes(text: str, limit: int) -> str:
    """At most `limit` UTF-8 bytes, cut on a character boundary, with an ellipsis when cut."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode(errors="ignore") + "…"


async def send_message(channel: Channel, msg: OutMessage, client: httpx.AsyncClient) -> str:
    """Deliver; returns a short status ("250", "errcode 0", "HTTP 200"). Raises DeliveryError."""
    try:
        cfg = channel.config
        if isinstance(cfg, EmailConfig):
            return await asyncio.to_thread(_send_email, cfg, channel.secrets, msg)
        if isinstance(cfg, WecomConfig):
            return await _send_wecom(cfg, channel.secrets, msg, client)
        if isinstance(cfg, DingtalkConfig):
            return await _send_dingtalk(cfg, channel.secrets, msg, client)
        if isinstance(cfg, SmsConfig):
            return await _send_sms(cfg, channel.secrets, msg, client)
        raise DeliveryError(f"channel {channel.channel_id}: unknown kind {channel.kind}")
    except DeliveryError as exc:
        raise DeliveryError(_clean(str(exc), channel.secrets), exc.status) from None
    except (httpx.HTTPError, OSError, smtplib.SMTPException, ssl.SSLError, ValueError) as exc:
        raise DeliveryError(_clean(f"{type(exc).__name__}: {exc}", channel.secrets)) from None


def _clean(text: str, secrets: dict[str, str]) -> str:
    return redact_text(scrub_secrets(text, secrets))[:500]


def _send_email(cfg: EmailConfig, secrets: dict[str, str], msg: OutMessage) -> str:
    if not msg.address:
        raise DeliveryError("e-mail contact has no address")
    m = EmailMessage()
    m["Subject"] = msg.title
    m["From"] = cfg.from_addr
    m["To"] = msg.address
    m["Date"] = formatdate(localtime=False)
    m["Message-ID"] = f"<{msg.idempotency_key}@parkpulse>"
    m["Content-Language"] = "zh-CN" if msg.language == "zh" else "en"
    m.set_content(msg.body)
    ctx = ssl.create_default_context(cafile=cfg.ca_file)
    smtp: smtplib.SMTP
    if cfg.tls == "implicit":
        smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, context=ctx, timeout=cfg.timeout_s)
    else:
        smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
    try:
        if cfg.tls == "starttls":
            smtp.ehlo()
            smtp.starttls(context=ctx)  # refuses to go on in clear when the server cannot
            smtp.ehlo()
        password = secrets.get("password")
        if cfg.username and password:
            smtp.login(cfg.username, password)
        refused = smtp.send_message(m)
        if refused:
            raise DeliveryError(f"recipient refused: {refused}")
    finally:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()
    return "250"


def _robot_answer(r: httpx.Response) -> str:
    if r.status_code != 200:
        raise DeliveryError(f"HTTP {r.status_code}: {r.text[:200]}", str(r.status_code))
    try:
        doc = r.json()
    except ValueError:
        raise DeliveryError(f"HTTP 200 but not JSON: {r.text[:200]}", "200") from None
    code = doc.get("errcode") if isinstance(doc, dict) else None
    if code != 0:
        errmsg = doc.get("errmsg") if isinstance(doc, dict) else doc
        raise DeliveryError(f"errcode {code}: {errmsg}", f"errcode {code}")
    return "errcode 0"


async def _send_wecom(
    cfg: WecomConfig, secrets: dict[str, str], msg: OutMessage, client: httpx.AsyncClient
) -> str:
    if cfg.msgtype == "markdown":
        content = truncate_bytes(f"## {msg.title}\n{msg.body}", int(fact_value("wecom.markdown_max_bytes")))
    else:
        content = truncate_bytes(f"{msg.title}\n{msg.body}", int(fact_value("wecom.text_max_bytes")))
    payload = {"msgtype": cfg.msgtype, cfg.msgtype: {"content": content}}
    r = await client.post(cfg.url, params={"key": secrets["key"]}, json=payload, timeout=cfg.timeout_s)
    return _robot_answer(r)


async def _send_dingtalk(
    cfg: DingtalkConfig, secrets: dict[str, str], msg: OutMessage, client: httpx.AsyncClient
) -> str:
    params = {"access_token": secrets["access_token"]}
    secret = secrets.get("secret")
    if secret:
        ts = int(time.time() * 1000)
        params |= {"timestamp": str(ts), "sign": dingtalk_sign(secret, ts)}
    payload: dict[str, Any]
    if cfg.msgtype == "markdown":
        payload = {
            "msgtype": "markdown",
            "markdown": {"title": msg.title, "text": f"## {msg.title}\n\n{msg.body}"},
        }
    else:
        payload = {"msgtype": "text", "text": {"content": f"{msg.title}\n{msg.body}"}}
    r = await client.post(cfg.url, params=params, json=payload, timeout=cfg.timeout_s)
    return _robot_answer(r)


def _fill(value: object, mapping: dict[str, str]) -> object:
    if isinstance(value, str):
        return string.Template(value).substitute(mapping)
    if isinstance(value, dict):
        return {k: _fill(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, mapping) for v in value]
    return value


def sms_text(msg: OutMessage, max_chars: int) -> str:
    """The first lines of the message, plain (links kept as bare URLs), within max_chars."""
    plain = msg.body.replace("**", "")
    text = f"{msg.title}\n{plain}"
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


async def _send_sms(
    cfg: SmsConfig, secrets: dict[str, str], msg: OutMessage, client: httpx.AsyncClient
) -> str:
    if not msg.address:
        raise DeliveryError("SMS contact has no phone number")
    mapping = {
        "phone": msg.address,
        "text": sms_text(msg, cfg.max_chars),
        "title": msg.title,
        "message_id": str(msg.message_id),
        "idempotency_key": msg.idempotency_key,
    } | {f"secret_{k}": v for k, v in secrets.items()}
    headers = {k: str(_fill(v, mapping)) for k, v in cfg.headers.items()}
    body = _fill(cfg.body, mapping)
    if cfg.format == "json":
        r = await client.post(cfg.url, json=body, headers=headers, timeout=cfg.timeout_s)
    else:
        form = {k: v if isinstance(v, str) else str(v) for k, v in dict(body).items()}  # type: ignore[call-overload]
        r = await client.post(cfg.url, data=form, headers=headers, timeout=cfg.timeout_s)
    if not 200 <= r.status_code < 300:
        raise DeliveryError(f"HTTP {r.status_code}: {r.text[:200]}", str(r.status_code))
    if cfg.success_field:
        got: object = r.json() if r.content else None
        for part in cfg.success_field.split("."):
            got = got.get(part) if isinstance(got, dict) else None
        if str(got) != (cfg.success_value or ""):
            raise DeliveryError(f"{cfg.success_field} = {got!r}, expected {cfg.success_value!r}", str(got))
    return f"HTTP {r.status_code}"
