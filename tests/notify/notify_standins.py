"""Local stand-ins for the notification channels: real servers on 127.0.0.1.

- `HttpStandIn`: one HTTP server that plays the WeCom group robot (`/cgi-bin/webhook/send`), the
  DingTalk custom robot (`/robot/send`, signature checked) and an SMS provider (`/sms/send`). It
  checks each request's format like the vendor would and records what it accepted. It can be
  set to fail (HTTP 503, echoing the query so the test sees secrets are scrubbed) and back.
- `SmtpStandIn`: aiosmtpd with STARTTLS or implicit TLS, a self-signed certificate made here,
  and AUTH LOGIN/PLAIN checked against a password.
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
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from parkpulse.services import free_port

WECOM_KEY = "wecomKey-Hq83n5"
DING_TOKEN = "dingTok-Ux27m4"
DING_SECRET = "SECdingSecret-Kp61w9"
SMS_KEY = "smsKey-Rt45b8"
SMTP_PASSWORD = "smtpPw-Gz92c6"
SECRETS = (WECOM_KEY, DING_TOKEN, DING_SECRET, SMS_KEY, SMTP_PASSWORD)


@dataclass
class Received:
    channel: str
    at: float
    body: dict[str, Any]
    text: str


@dataclass
class HttpStandIn:
    wecom_key: str = WECOM_KEY
    ding_token: str = DING_TOKEN
    ding_secret: str = DING_SECRET
    sms_key: str = SMS_KEY
    down: set[str] = field(default_factory=set)  # channels answering 503
    received: list[Received] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    requests: int = 0
    delay_s: float = 0.0  # time each request takes before it is answered

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                code, answer = standin.handle(self.path, dict(self.headers), raw)
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            request_queue_size = 128

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client killed mid-request (the restart test) is expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="http-standin", daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def of(self, channel: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.channel == channel]

    def handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        url = urlsplit(path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        channel = {"/cgi-bin/webhook/send": "wecom", "/robot/send": "dingtalk", "/sms/send": "sms"}.get(
            url.path
        )
        if channel is None:
            return 404, {"error": "no such path"}
        if channel in self.down:
            return 503, {
                "error": f"unavailable, you sent {url.query}"
            }  # echoes secrets: the client must scrub
        try:
            body = json.loads(raw)
        except ValueError:
            return self._reject(channel, "body is not JSON")
        check = {"wecom": self._wecom, "dingtalk": self._dingtalk, "sms": self._sms}[channel]
        problem, text = check(q, headers, body)
        if problem:
            return self._reject(channel, problem)
        with self._lock:
            self.received.append(Received(channel, time.time(), body, text))
        return 200, {"errcode": 0, "errmsg": "ok"} if channel != "sms" else {"code": "OK", "request_id": "x"}

    def _reject(self, channel: str, why: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.rejected.append(f"{channel}: {why}")
        if channel == "sms":
            return 400, {"code": "InvalidRequest", "message": why}
        return 200, {"errcode": 40001 if channel == "wecom" else 310000, "errmsg": why}

    def _wecom(self, q: dict[str, str], h: dict[str, str], body: Any) -> tuple[str | None, str]:
        if q.get("key") != self.wecom_key:
            return "invalid webhook key", ""
        mt = body.get("msgtype")
        if mt not in ("text", "markdown") or not isinstance(body.get(mt), dict):
            return f"bad msgtype {mt!r}", ""
        content = body[mt].get("content")
        limit = 4096 if mt == "markdown" else 2048
        if not isinstance(content, str) or not content or len(content.encode()) > limit:
            return "content missing or too long", ""
        return None, content

    def _dingtalk(self, q: dict[str, str], h: dict[str, str], body: Any) -> tuple[str | None, str]:
        if q.get("access_token") != self.ding_token:
            return "token is not exist", ""
        ts, sign = q.get("timestamp", ""), q.get("sign", "")
        if not ts.isdigit() or abs(time.time() * 1000 - int(ts)) > 3600_000:
            return "invalid timestamp", ""
        # the robot's check, written from the documented scheme: base64(HMAC-SHA256(secret, ts + "\n" + secret))
        want = base64.b64encode(
            hmac.new(
                self.ding_secret.encode(), (ts + "\n" + self.ding_secret).encode(), hashlib.sha256
            ).digest()
        ).decode()
        if not hmac.compare_digest(want, sign):
            return "sign not match", ""
        mt = body.get("msgtype")
        if mt == "markdown":
            md = body.get("markdown") or {}
            if not md.get("title") or not md.get("text"):
                return "markdown needs title and text", ""
            return None, str(md["text"])
        if mt == "text" and (body.get("text") or {}).get("content"):
            return None, str(body["text"]["content"])
        return f"bad msgtype {mt!r}", ""

    def _sms(self, q: dict[str, str], h: dict[str, str], body: Any) -> tuple[str | None, str]:
        auth = {k.lower(): v for k, v in h.items()}.get("authorization", "")
        if auth != f"Bearer {self.sms_key}":
            return "bad api key", ""
        if not str(body.get("mobile", "")).lstrip("+").isdigit():
            return "bad mobile", ""
        if body.get("template_code") != "PP_ALERT" or not (body.get("params") or {}).get("text"):
            return "bad template", ""
        if not body.get("out_id"):
            return "out_id missing", ""
        return None, str(body["params"]["text"])


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[float, list[str], Message]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(
                (
                    time.time(),
                    list(envelope.rcpt_tos),
                    message_from_bytes(envelope.content, policy=policy.default),
                )
            )
        return "250 OK"


class SmtpStandIn:
    """aiosmtpd on 127.0.0.1 with STARTTLS (`mode='starttls'`) or implicit TLS (`'implicit'`)."""

    def __init__(self, folder: Path, mode: str, user: str = "alerts", password: str = SMTP_PASSWORD) -> None:
        self.cert, key = make_cert(folder)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, key)
        self.box = _Mailbox()
        self.auth_failures = 0

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and data.login == user.encode()
                and data.password == password.encode()
            )
            if not ok:
                self.auth_failures += 1
            return AuthResult(success=ok, handled=False)

        self.port = free_port()
        common: dict[str, Any] = {
            "authenticator": authenticator,
            "auth_required": True,
            "auth_require_tls": True,
            "auth_exclude_mechanism": [
                "LOGIN"
            ],  # smtplib offers PLAIN first; one mechanism keeps failures quick
        }
        if mode == "implicit":
            # the whole connection is TLS; aiosmtpd does not see it as such for AUTH, so it must not require it
            common["auth_require_tls"] = False
            self.ctl = Controller(self.box, hostname="127.0.0.1", port=self.port, ssl_context=ctx, **common)
        else:
            self.ctl = Controller(
                self.box,
                hostname="127.0.0.1",
                port=self.port,
                tls_context=ctx,
                require_starttls=True,
                **common,
            )
        self.ctl.start()

    @property
    def messages(self) -> list[tuple[float, list[str], Message]]:
        with self.box.lock:
            return list(self.box.messages)

    def close(self) -> None:
        self.ctl.stop()
