"""Grouping, quiet hours, rate limits and digests (the pure rules), channel validation, texts."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from notify import (
    AlertLine,
    QuietHours,
    Recipient,
    Rules,
    Waiting,
    channel_facts,
    parse_channel,
    parse_quiet,
    plan_recipient,
    render,
    scrub_secrets,
    truncate_bytes,
)
from notify.errors import ChannelConfigError
from parkpulse.errors import ValidationReport

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
RULES = Rules(group_window_s=60, rate_limit=3, rate_window_s=600)


def item(
    i: int, *, park: str = "p1", kind: str = "emission", sev: str = "warning", at: datetime = T0
) -> Waiting:
    return Waiting(i, 100 + i, park, kind, sev, "fired", at, at)


def test_first_alert_of_a_burst_goes_at_once_the_rest_as_one_group_a_window_later() -> None:
    r = Recipient(1)
    first = plan_recipient([item(1)], r, RULES, T0)
    assert [(p.form, len(p.items)) for p in first] == [("single", 1)]
    r.last_sent["p1|emission"] = T0
    burst = [item(i, at=T0 + timedelta(seconds=i)) for i in range(2, 30)]
    assert plan_recipient(burst, r, RULES, T0 + timedelta(seconds=30)) == []  # inside the window: wait
    later = plan_recipient(burst, r, RULES, T0 + timedelta(seconds=61))
    assert [(p.form, p.group_key, len(p.items)) for p in later] == [("group", "p1|emission", 28)]


def test_parks_and_kinds_group_apart() -> None:
    items = [item(1), item(2, kind="data_gap"), item(3, park="p2"), item(4)]
    plans = plan_recipient(items, Recipient(1), RULES, T0)
    assert sorted((p.group_key, len(p.items)) for p in plans) == [
        ("p1|data_gap", 1),
        ("p1|emission", 2),
        ("p2|emission", 1),
    ]


def test_critical_goes_at_once_through_quiet_hours_and_rate_limit() -> None:
    quiet = QuietHours(time(11, 0), time(13, 0), SH)  # 12:00 local is inside
    r = Recipient(1, quiet=quiet, sent_in_window=99)
    plans = plan_recipient([item(1, sev="critical"), item(2, sev="critical"), item(3)], r, RULES, T0)
    assert [(p.form, p.critical, p.items[0].item_id) for p in plans] == [
        ("single", True, 1),
        ("single", True, 2),
    ]


def test_quiet_hours_hold_then_one_digest() -> None:
    quiet = QuietHours(time(22, 0), time(7, 0), SH)  # over midnight
    night = datetime(2026, 3, 2, 23, 30, tzinfo=SH)
    held = [
        item(1, at=night),
        item(2, kind="tamper", at=night + timedelta(hours=1)),
        item(3, park="p2", at=night + timedelta(hours=2)),
    ]
    r = Recipient(1, quiet=quiet)
    assert plan_recipient(held, r, RULES, night + timedelta(hours=3)) == []  # 02:30: still quiet
    morning = datetime(2026, 3, 3, 7, 0, tzinfo=SH)
    plans = plan_recipient(held, r, RULES, morning)
    assert [(p.form, len(p.items)) for p in plans] == [("digest", 3)]


def test_rate_limit_waits_then_digests_what_is_due() -> None:
    items = [item(i, park=f"p{i}") for i in range(1, 6)]  # 5 groups due, budget 3 - 1 = 2
    plans = plan_recipient(items, Recipient(1, sent_in_window=1), RULES, T0)
    assert [(p.form, len(p.items)) for p in plans] == [("digest", 5)]
    assert plan_recipient(items, Recipient(1, sent_in_window=3), RULES, T0) == []  # budget spent: wait


def test_a_digest_counts_as_the_last_message_of_every_group() -> None:
    r = Recipient(1, last_digest=T0)
    assert plan_recipient([item(1)], r, RULES, T0 + timedelta(seconds=10)) == []
    assert len(plan_recipient([item(1)], r, RULES, T0 + timedelta(seconds=60))) == 1


def test_quiet_parse() -> None:
    q = parse_quiet("22:00-07:00")
    assert q is not None and (q.start, q.end) == (time(22), time(7))
    assert parse_quiet("") is None
    for bad in ("22-07", "25:00-07:00", "07:00-07:00"):
        with pytest.raises(ChannelConfigError, match=r"^quiet: .*got '"):
            parse_quiet(bad)


def test_channel_errors_name_every_field_and_mask_secrets() -> None:
    with pytest.raises(ValidationReport) as e:
        parse_channel(
            "m",
            "email",
            {"host": "smtp.example", "port": 99999, "tls": "ssl3", "from_addr": "nobody"},
            {"password": "pw-Vy71x3", "extra": 1},
        )
    text = str(e.value)
    for field in ("config.port", "config.tls", "config.from_addr", "secrets"):
        assert field in text
    assert "99999" in text and "'ssl3'" in text
    assert "pw-Vy71x3" not in text
    with pytest.raises(ValidationReport) as e2:
        parse_channel("w", "wecom", {"url": "https://qyapi.example/send?key=k-Zp11q2"}, {})
    assert "config.url" in str(e2.value) and "secrets.key" in str(e2.value)
    assert "k-Zp11q2" not in str(e2.value)
    with pytest.raises(ValidationReport, match=r"config\.body\.params\.text: unknown placeholder"):
        parse_channel("s", "sms", {"url": "https://sms.example", "body": {"params": {"text": "$txt"}}}, {})
    with pytest.raises(ChannelConfigError, match=r"^kind: must be one of"):
        parse_channel("x", "pager", {}, {})


def test_scrub_masks_plain_and_url_encoded_secret() -> None:
    s = scrub_secrets("sign=ab%2Bcd%3D and ab+cd= and x", {"sign": "ab+cd="})
    assert "ab+cd=" not in s and "ab%2Bcd%3D" not in s and s.endswith("and x")


def test_truncate_keeps_utf8_whole() -> None:
    t = truncate_bytes("告警" * 2000, 4096)
    assert len(t.encode()) <= 4096 and t.endswith("…")
    assert truncate_bytes("short", 10) == "short"


def _line(i: int, lang_msg: str = "超标") -> AlertLine:
    return AlertLine(
        i, "p1", "示范园区", "华能锅炉厂", "emission", "warning", "fired", lang_msg, "exceeded", T0
    )


def test_texts_zh_and_en_link_to_the_evidence_page() -> None:
    title, body = render("single", [_line(7)], "zh", "https://c.example/", SH)
    assert title == "[警告] 排放超标 · 示范园区"
    assert (
        "华能锅炉厂" in body and "(https://c.example/alerts/7)" in body and "2026-03-02 12:00:00 CST" in body
    )
    title, body = render("group", [_line(i) for i in range(1, 13)], "en", "https://c.example", SH)
    assert title == "[WARNING] emission exceedance × 12 · 示范园区"
    assert body.count("https://c.example/alerts/") == 10 and "and 2 more" in body
    assert "https://c.example/alerts?park=p1&state=all&kind=emission" in body
    title, _ = render("digest", [_line(1)], "zh", "https://c.example", SH)
    assert title == "[警告] 告警汇总(1 条)"


def test_every_channel_figure_has_a_source_and_a_verified_mark() -> None:
    facts = channel_facts()
    assert facts["wecom.markdown_max_bytes"].value == 4096
    assert facts["dingtalk.messages_per_minute"].value == 20
    assert all(f.source and isinstance(f.verified, bool) for f in facts.values())


def test_the_shipped_channel_examples_are_valid() -> None:
    from pathlib import Path

    from notify import channel_from_file

    folder = Path(__file__).resolve().parents[2] / "notify" / "examples"
    kinds = {channel_from_file(f).kind for f in sorted(folder.glob("*.yaml"))}
    assert kinds == {"email", "wecom", "dingtalk", "sms"}
