"""The notification service: alert events → e-mail, WeCom / DingTalk group robots and SMS, with
subscriptions, grouping, quiet hours, rate limits, an outbox and an audit of every attempt.

It reads alerts from the store (`alert_events`, `v_alerts`) with its own cursor and imports only
the kernel (docs/architecture.md)."""

from notify._admin import (
    add_channel,
    add_contact,
    add_subscription,
    channel_from_file,
    list_channels,
    parse_quiet,
)
from notify._channels import Channel, parse_channel, scrub_secrets
from notify._compose import compose_once
from notify._deliver import Deliverer, backoff_s
from notify._facts import Fact, channel_facts
from notify._grouping import Plan, QuietHours, Recipient, Rules, Waiting, plan_recipient
from notify._intake import ensure_cursor, take_events
from notify._senders import OutMessage, dingtalk_sign, send_message, truncate_bytes
from notify._service import NotifyService
from notify._settings import NotifySettings
from notify._texts import AlertLine, alert_url, render

__all__ = [
    "AlertLine",
    "Channel",
    "Deliverer",
    "Fact",
    "NotifyService",
    "NotifySettings",
    "OutMessage",
    "Plan",
    "QuietHours",
    "Recipient",
    "Rules",
    "Waiting",
    "add_channel",
    "add_contact",
    "add_subscription",
    "alert_url",
    "backoff_s",
    "channel_facts",
    "channel_from_file",
    "compose_once",
    "dingtalk_sign",
    "ensure_cursor",
    "list_channels",
    "parse_channel",
    "parse_quiet",
    "plan_recipient",
    "render",
    "scrub_secrets",
    "send_message",
    "take_events",
    "truncate_bytes",
]
