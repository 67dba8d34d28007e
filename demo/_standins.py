"""Local stand-ins for the demo's notification channels: a WeCom group robot and a DingTalk robot
(one small HTTP server that checks each request the way the vendor documents it, DingTalk's
signature included) and an SMTP server (aiosmtpd, STARTTLS with a certificate made here).

Each keeps what it accepted, so the demo can print it and its test can count it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from parkpulse.services import free_port

__all__ = ["Received", "RobotStandIn", "SmtpStandIn"]

_PATHS = {"/cgi-bin/webhook/send": "wecom", "/robot/send": "dingtalk"}


@dataclass
class Received:
    """One message a stand-in accepted: its channel and its text."""

    channel: str
    text: str


@dataclass
class RobotStandIn:
    """WeCom (`/cgi-bin/webhook/send?key=`) and DingTalk (`/robot/send?access_token=&timestamp=&sign=`)."""

    wecom_key: str
    ding_token: str
    ding_secret: str
    received: list[Received] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # the query holds the robots' keys: never logged

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                code, answer = standin.handle(self.path, raw)
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="demo-robots", daemon=True)
        self._thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def of(self, channel: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.channel == channel]

    def handle(self, path: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        url = urlsplit(path)
        channel = _PATHS.get(url.path)
        if channel is None:
            return 404, {"errcode": 404, "errmsg": "no such path"}
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        problem, text = (
            ("body is not a JSON object", "")
            if not isinstance(body, dict)
            else self._wecom(q, body)
            if channel == "wecom"
            else self._dingtalk(q, body)
        )
        with self._lock:
            if problem:
                self.rejected.append(f"{channel}: {problem}")
            else:
                self.received.append(Received(channel, text))
        return 200, {"errcode": 40001 if problem else 0, "errmsg": problem or "ok"}

    def _wecom(self, q: dict[str, str], body: dict[str, Any]) -> tuple[str | None, str]:
        if not hmac.compare_digest(q.get("key", ""), self.wecom_key):
            return "invalid webhook key", ""
        mt = body.get("msgtype")
        content = (body.get(mt) or {}).get("content") if mt in ("text", "markdown") else None
        limit = 4096 if mt == "markdown" else 2048
        if not isinstance(content, str) or not content or len(content.encode()) > limit:
            return f"msgtype {mt!r}: content missing or too long", ""
        return None, content

    def _dingtalk(self, q: dict[str, str], body: dict[str, Any]) -> tuple[str | None, str]:
        if not hmac.compare_digest(q.get("access_token", ""), self.ding_token):
            return "token is not exist", ""
        ts = q.get("timestamp", "")
        if not ts.isdigit() or abs(time.time() * 1000 - int(ts)) > 3600_000:
            return "invalid timestamp", ""
        # the documented signed mode: base64(HMAC-SHA256(secret, timestamp + "\n" + secret))
        mac = hmac.new(self.ding_secret.encode(), f"{ts}\n{self.ding_secret}".encode(), hashlib.sha256)
        if not hmac.compare_digest(base64.b64encode(mac.digest()).decode(), q.get("sign", "")):
            return "sign not match", ""
        mt = body.get("msgtype")
        part = body.get(mt) if isinstance(mt, str) else None
        part = part if isinstance(part, dict) else {}
        text = part.get("text") if mt == "markdown" else part.get("content") if mt == "text" else None
        if not isinstance(text, str) or not text or (mt == "markdown" and not part.get("title")):
            return f"msgtype {mt!r}: title or text missing", ""
        return None, text


class _Mailbox:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        body = msg.get_body(preferencelist=("plain", "html")) if isinstance(msg, EmailMessage) else None
        text = body.get_content() if isinstance(body, EmailMessage) else ""
        with self.lock:
            self.received.append(Received("email", f"{msg['Subject']}\n{text}"))
        return "250 OK"


class SmtpStandIn:
    """aiosmtpd on 127.0.0.1 that requires STARTTLS, with a self-signed certificate for 127.0.0.1."""

    def __init__(self, folder: Path) -> None:
        self.cert = _make_cert(folder)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, folder / "smtp-key.pem")
        self.box = _Mailbox()
        self.port = free_port()
        self.ctl = Controller(
            self.box, hostname="127.0.0.1", port=self.port, tls_context=ctx, require_starttls=True
        )
        self.ctl.start()

    @property
    def received(self) -> list[Received]:
        with self.box.lock:
            return list(self.box.received)

    def close(self) -> None:
        self.ctl.stop()


def _make_cert(folder: Path) -> Path:
    """A self-signed certificate for localhost / 127.0.0.1 (smtp-cert.pem, smtp-key.pem in `folder`)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path
