"""Message text in Chinese or English, with links back to the console's evidence page
(`{console_url}/alerts/{alert_id}`) or the park's alert list (`/alerts?park=…&kind=…`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

__all__ = ["AlertLine", "alert_url", "render"]

_SEVERITY = {
    "zh": {"info": "提示", "warning": "警告", "critical": "严重"},
    "en": {"info": "INFO", "warning": "WARNING", "critical": "CRITICAL"},
}
_KIND = {
    "zh": {
        "emission": "排放超标",
        "data_gap": "数据中断",
        "tamper": "疑似篡改",
        "threshold": "越限",
        "rate_of_change": "突变",
    },
    "en": {
        "emission": "emission exceedance",
        "data_gap": "data gap",
        "tamper": "tamper sign",
        "threshold": "threshold",
        "rate_of_change": "rate of change",
    },
}
_ACTION = {
    "zh": {
        "fired": "触发",
        "reopened": "重新打开",
        "resolved": "已恢复",
        "acknowledged": "已确认",
        "updated": "更新",
        "comment": "批注",
    },
    "en": {
        "fired": "fired",
        "reopened": "reopened",
        "resolved": "resolved",
        "acknowledged": "acknowledged",
        "updated": "updated",
        "comment": "comment",
    },
}
_WORDS = {
    "zh": {
        "evidence": "查看证据",
        "more": "另有 {n} 条",
        "all": "全部告警",
        "digest": "告警汇总({n} 条)",
        "held": "免打扰时段或频率限制期间暂存的告警:",
        "at": "时间",
        "state": "状态",
    },
    "en": {
        "evidence": "evidence",
        "more": "and {n} more",
        "all": "all alerts",
        "digest": "Alert digest ({n})",
        "held": "Alerts held during quiet hours or a rate limit:",
        "at": "at",
        "state": "state",
    },
}
MAX_LINES = 10


@dataclass(frozen=True)
class AlertLine:
    alert_id: int
    park_id: str
    park_name: str | None
    firm_name: str | None
    kind: str
    severity: str
    action: str
    message_zh: str
    message_en: str
    event_at: datetime


def alert_url(console_url: str, alert_id: int) -> str:
    return f"{console_url.rstrip('/')}/alerts/{alert_id}"


def _list_url(console_url: str, park_id: str, kind: str | None) -> str:
    q = {"park": park_id, "state": "all"} | ({"kind": kind} if kind else {})
    return f"{console_url.rstrip('/')}/alerts?{urlencode(q)}"


def _line(a: AlertLine, lang: str, console_url: str, tz: ZoneInfo) -> str:
    who = a.firm_name or a.park_name or a.park_id
    text = a.message_zh if lang == "zh" else a.message_en
    at = a.event_at.astimezone(tz).strftime("%m-%d %H:%M")
    action = "" if a.action == "fired" else f" ({_ACTION[lang].get(a.action, a.action)})"
    return f"- {at} {who}: {text}{action} [{_WORDS[lang]['evidence']}]({alert_url(console_url, a.alert_id)})"


def render(form: str, lines: list[AlertLine], lang: str, console_url: str, tz: ZoneInfo) -> tuple[str, str]:
    """(title, body) of a single, group or digest message."""
    lang = lang if lang in _WORDS else "zh"
    w = _WORDS[lang]
    worst = max(lines, key=lambda a: ("info", "warning", "critical").index(a.severity)).severity
    sev = f"[{_SEVERITY[lang][worst]}]"
    first = lines[0]
    park = first.park_name or first.park_id
    if form == "single":
        kind = _KIND[lang].get(first.kind, first.kind)
        action = _ACTION[lang].get(first.action, first.action)
        title = f"{sev} {kind} · {park}" + ("" if first.action == "fired" else f" · {action}")
        who = first.firm_name or park
        text = first.message_zh if lang == "zh" else first.message_en
        at = first.event_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")
        body = (
            f"**{who}**: {text}\n{w['state']}: {action} · {w['at']} {at}\n"
            f"[{w['evidence']}]({alert_url(console_url, first.alert_id)})"
        )
        return title, body
    shown = [_line(a, lang, console_url, tz) for a in lines[:MAX_LINES]]
    if len(lines) > MAX_LINES:
        shown.append(w["more"].format(n=len(lines) - MAX_LINES))
    if form == "group":
        kind = _KIND[lang].get(first.kind, first.kind)
        title = f"{sev} {kind} × {len(lines)} · {park}"
        shown.append(f"[{w['all']}]({_list_url(console_url, first.park_id, first.kind)})")
        return title, "\n".join(shown)
    title = f"{sev} {w['digest'].format(n=len(lines))}"
    parks = sorted({a.park_id for a in lines})
    links = [f"[{w['all']} · {p}]({_list_url(console_url, p, None)})" for p in parks[:3]]
    return title, "\n".join([w["held"], *shown, *links])
