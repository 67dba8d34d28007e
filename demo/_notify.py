"""The demo's notification channels: local stand-ins, the channels and contacts pointing at them,
subscriptions to emission alerts, and what each stand-in received.

The channel files (with their generated keys) are written private to <workdir>/notify/ and
passed to `parkpulse notify channels add`; no key is printed or logged.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from demo._standins import Received, RobotStandIn, SmtpStandIn

__all__ = ["DemoChannels", "start_channels"]

CHANNELS = ("demo-wecom", "demo-dingtalk", "demo-mail")
_LABELS = {
    "demo-wecom": "环保值班群 (WeCom)",
    "demo-dingtalk": "园区环保钉钉群 (DingTalk)",
    "demo-mail": "环保专员邮箱",
}
_MAILBOX = "env-officer@qingxi-park.example"


@dataclass
class DemoChannels:
    """The running stand-ins and the channel ids that point at them."""

    robots: RobotStandIn
    smtp: SmtpStandIn

    def received(self) -> dict[str, list[Received]]:
        return {
            "wecom": self.robots.of("wecom"),
            "dingtalk": self.robots.of("dingtalk"),
            "email": self.smtp.received,
        }

    def close(self) -> None:
        self.robots.close()
        self.smtp.close()


def _channel_files(folder: Path, robots: RobotStandIn, smtp: SmtpStandIn) -> list[Path]:
    docs: list[dict[str, Any]] = [
        {
            "id": "demo-wecom",
            "kind": "wecom",
            "config": {"url": f"{robots.base}/cgi-bin/webhook/send", "msgtype": "markdown"},
            "secrets": {"key": robots.wecom_key},
        },
        {
            "id": "demo-dingtalk",
            "kind": "dingtalk",
            "config": {"url": f"{robots.base}/robot/send", "msgtype": "markdown"},
            "secrets": {"access_token": robots.ding_token, "secret": robots.ding_secret},
        },
        {
            "id": "demo-mail",
            "kind": "email",
            "config": {
                "host": "127.0.0.1",
                "port": smtp.port,
                "tls": "starttls",
                "from_addr": "alerts@qingxi-park.example",
                "ca_file": str(smtp.cert),
            },
        },
    ]
    paths = []
    for doc in docs:
        p = folder / f"{doc['id']}.yaml"
        p.touch(mode=0o600)
        p.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
        paths.append(p)
    return paths


def start_channels(
    folder: Path,
    park_id: str,
    cli_all: Callable[[Sequence[Sequence[str]]], list[str]],
) -> DemoChannels:
    """Start the stand-ins, add the channels and one group contact each, subscribed to the park's
    emission alerts; `cli_all` runs `parkpulse` commands side by side and returns their outputs."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    robots = RobotStandIn(
        wecom_key=secrets.token_urlsafe(12),
        ding_token=secrets.token_urlsafe(12),
        ding_secret="SEC" + secrets.token_hex(16),
    )
    smtp = SmtpStandIn(folder)
    chans = DemoChannels(robots, smtp)
    try:
        files = _channel_files(folder, robots, smtp)
        cli_all([("notify", "channels", "add", "-f", str(f)) for f in files])
        added = cli_all(
            [
                ("notify", "contact", "--channel", c, "--label", _LABELS[c])
                + (("--address", _MAILBOX) if c == "demo-mail" else ())
                for c in CHANNELS
            ]
        )
        ids = [_contact_id(text) for text in added]
        cli_all(
            [
                ("notify", "subscribe", "--contact", str(i), "--park", park_id, "--kinds", "emission")
                for i in ids
            ]
        )
    except BaseException:
        chans.close()
        raise
    return chans


def _contact_id(text: str) -> int:
    m = re.search(r"contact (\d+) added", text)
    if m is None:
        raise ValueError(f"`notify contact` did not say which contact it added: {text[-200:]!r}")
    return int(m[1])
