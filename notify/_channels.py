"""Channel definitions: what each kind needs, checked field by field, and what may be shown.

A channel has `config` (shown by `notify channels list`) and `secrets` (never shown, logged or
put into an exception): the SMTP password, the WeCom robot key, the DingTalk access token and
signing secret, the SMS adapter's API keys.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from notify._facts import fact_value
from notify.errors import ChannelConfigError
from parkpulse.errors import FieldError, ValidationReport, field_path
from parkpulse.redact import MASK

__all__ = [
    "SMS_VARIABLES",
    "Channel",
    "DingtalkConfig",
    "EmailConfig",
    "SmsConfig",
    "WecomConfig",
    "parse_channel",
    "scrub_secrets",
]

KINDS = ("email", "wecom", "dingtalk", "sms")
# what an SMS template may use besides $secret_<name>
SMS_VARIABLES = ("phone", "text", "title", "message_id", "idempotency_key")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmailConfig(_Strict):
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    tls: Literal["starttls", "implicit"] = "starttls"
    username: str | None = None
    from_addr: str
    ca_file: str | None = Field(default=None, description="a private CA bundle; default: the system's")
    timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("from_addr")
    @classmethod
    def _addr(cls, v: str) -> str:
        if "@" not in v or any(c.isspace() for c in v.strip()):
            raise ValueError("not an e-mail address")
        return v.strip()


class EmailSecrets(_Strict):
    password: str | None = None


def _http_url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    if "?" in v:
        raise ValueError("no query here: credentials go in secrets")
    return v


class WecomConfig(_Strict):
    url: str = Field(default_factory=lambda: str(fact_value("wecom.endpoint")))
    msgtype: Literal["markdown", "text"] = "markdown"
    timeout_s: float = Field(default=10.0, gt=0)

    _url = field_validator("url")(_http_url)


class WecomSecrets(_Strict):
    key: str = Field(min_length=1)


class DingtalkConfig(_Strict):
    url: str = Field(default_factory=lambda: str(fact_value("dingtalk.endpoint")))
    msgtype: Literal["markdown", "text"] = "markdown"
    timeout_s: float = Field(default=10.0, gt=0)

    _url = field_validator("url")(_http_url)


class DingtalkSecrets(_Strict):
    access_token: str = Field(min_length=1)
    secret: str | None = Field(default=None, description="the robot's 加签 secret (SEC…): signed mode")


class SmsConfig(_Strict):
    url: str
    method: Literal["POST"] = "POST"
    format: Literal["json", "form"] = "json"
    headers: dict[str, str] = Field(default_factory=dict)
    body: dict[str, Any]
    success_field: str | None = Field(
        default=None, description="dotted path in the JSON answer that tells success, e.g. code"
    )
    success_value: str | None = None
    max_chars: int = Field(default=300, ge=20, le=2000)
    timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url_ok(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v


_MODELS: dict[str, tuple[type[_Strict], type[_Strict] | None]] = {
    "email": (EmailConfig, EmailSecrets),
    "wecom": (WecomConfig, WecomSecrets),
    "dingtalk": (DingtalkConfig, DingtalkSecrets),
    "sms": (SmsConfig, None),
}


@dataclass(frozen=True)
class Channel:
    channel_id: str
    kind: str
    config: Any  # one of the *Config models
    secrets: dict[str, str]

    def shown(self) -> dict[str, Any]:
        """What may be printed: the config, and the secrets' names only."""
        return {
            "channel_id": self.channel_id,
            "kind": self.kind,
            "config": self.config.model_dump(),
            "secrets": {k: MASK for k in sorted(self.secrets)},
        }


def parse_channel(channel_id: str, kind: str, config: object, secrets: object) -> Channel:
    """Check a channel definition; every problem is named by its field, secrets shown masked."""
    problems: list[FieldError] = []
    if kind not in KINDS:
        raise ChannelConfigError("kind", kind, f"must be one of {', '.join(KINDS)}")
    cfg_model, sec_model = _MODELS[kind]
    cfg: Any = None
    try:
        cfg = cfg_model.model_validate(config if config is not None else {})
    except ValidationError as exc:
        problems += _problems(exc, "config", config)
    sec_map: dict[str, str] = {}
    if not isinstance(secrets, dict) or not all(isinstance(v, str) for v in secrets.values()):
        problems.append(ChannelConfigError("secrets", secrets, "must map names to strings"))
    else:
        sec_map = {str(k): v for k, v in secrets.items()}
        if sec_model is not None:
            try:
                sec_model.model_validate(sec_map)
            except ValidationError as exc:
                problems += _problems(exc, "secrets", sec_map)
    if isinstance(cfg, SmsConfig):
        problems += _check_sms_templates(cfg, sec_map)
    if problems:
        raise ValidationReport(f"channel {channel_id}", problems)
    return Channel(channel_id, kind, cfg, sec_map)


def _problems(exc: ValidationError, prefix: str, given: object) -> list[FieldError]:
    out: list[FieldError] = []
    for e in exc.errors():
        path = field_path(e["loc"], prefix)
        value = e.get("input", given)
        out.append(ChannelConfigError(path, value, e["msg"]))
    return out


def _check_sms_templates(cfg: SmsConfig, secrets: dict[str, str]) -> list[FieldError]:
    known = {v: "x" for v in SMS_VARIABLES} | {f"secret_{k}": "x" for k in secrets}
    out: list[FieldError] = []
    for path, text in [(f"config.headers.{k}", v) for k, v in cfg.headers.items()] + list(
        _leaves(cfg.body, "config.body")
    ):
        try:
            string.Template(text).substitute(known)
        except (KeyError, ValueError) as exc:
            out.append(
                ChannelConfigError(
                    path,
                    text,
                    f"unknown placeholder {exc} (use ${', $'.join(SMS_VARIABLES)} or $secret_<name>)",
                )
            )
    return out


def _leaves(value: object, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{path}[{i}]")]
    return []


def scrub_secrets(text: str, secrets: dict[str, str]) -> str:
    """`text` with every secret value of the channel masked (also URL-encoded forms)."""
    from urllib.parse import quote, quote_plus

    for value in secrets.values():
        if len(value) < 4:
            continue
        for form in {value, quote(value, safe=""), quote_plus(value)}:
            text = text.replace(form, MASK)
    return text
