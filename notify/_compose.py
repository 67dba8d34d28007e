"""Composition: waiting items → messages in the outbox, by the rules of `_grouping`.

One transaction locks the recipients that have waiting items (SKIP LOCKED), plans each recipient's messages, writes
them to `notify_messages` and links every item to its message. An item joins exactly one message,
so an alert event reaches a recipient at most once; the outbox delivers it at least once.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from notify._grouping import Plan, QuietHours, Recipient, Rules, Waiting, blocked_until, plan_recipient
from notify._texts import AlertLine, render

__all__ = ["compose_once"]


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return ZoneInfo("Asia/Shanghai")


async def _recipients(
    conn: psycopg.AsyncConnection, ids: list[int], rules: Rules
) -> tuple[dict[int, Recipient], dict[int, tuple[str, ZoneInfo]]]:
    cur = await conn.execute(
        "SELECT contact_id, quiet_start, quiet_end, timezone, language FROM notify_contacts WHERE contact_id = ANY(%s)",
        (ids,),
    )
    recips: dict[int, Recipient] = {}
    lang: dict[int, tuple[str, ZoneInfo]] = {}
    for cid, qs, qe, tzname, language in await cur.fetchall():
        tz = _zone(tzname)
        recips[cid] = Recipient(cid, QuietHours(qs, qe, tz) if qs is not None and qe is not None else None)
        lang[cid] = (language, tz)
    cur = await conn.execute(
        """SELECT contact_id, count(*), min(created_at) FROM notify_messages
           WHERE contact_id = ANY(%s) AND NOT critical AND created_at > now() - make_interval(secs => %s)
           GROUP BY contact_id""",
        (ids, rules.rate_window_s),
    )
    for cid, n, oldest in await cur.fetchall():
        recips[cid].sent_in_window = int(n)
        recips[cid].window_oldest = oldest
    cur = await conn.execute(
        """SELECT contact_id, form, group_key, max(created_at) FROM notify_messages
           WHERE contact_id = ANY(%s) AND NOT critical AND created_at > now() - make_interval(secs => %s)
           GROUP BY contact_id, form, group_key""",
        (ids, rules.group_window_s),
    )
    for cid, form, key, at in await cur.fetchall():
        r = recips[cid]
        if form == "digest":
            r.last_digest = at
        elif key is not None:
            r.last_sent[key] = at
    return recips, lang


async def _alert_lines(conn: psycopg.AsyncConnection, alert_ids: set[int]) -> dict[int, dict[str, Any]]:
    cur = await conn.execute(
        """SELECT alert_id, park_name, coalesce(firm_name, firm_id), message_zh, message_en,
                  park_name_en, firm_name_en
           FROM v_alerts WHERE alert_id = ANY(%s)""",
        (sorted(alert_ids),),
    )
    return {
        r[0]: {"park": r[1], "firm": r[2], "zh": r[3], "en": r[4], "park_en": r[5], "firm_en": r[6]}
        for r in await cur.fetchall()
    }


def _line(i: Waiting, a: dict[str, Any], lang: str) -> AlertLine:
    en = lang == "en"
    return AlertLine(
        alert_id=i.alert_id,
        park_id=i.park_id,
        park_name=(a.get("park_en") if en else None) or a.get("park"),
        firm_name=(a.get("firm_en") if en else None) or a.get("firm"),
        kind=i.kind,
        severity=i.severity,
        action=i.action,
        message_zh=a.get("zh") or "",
        message_en=a.get("en") or "",
        event_at=i.event_at,
    )


async def compose_once(
    conn: psycopg.AsyncConnection,
    rules: Rules,
    console_url: str,
    limit: int = 500,
    blocked: dict[int, datetime] | None = None,
) -> list[Plan]:
    """Compose what is due now; returns the plans written (one message each).

    `blocked` (kept by the caller between passes) remembers recipients that can take only critical
    messages until a time (quiet hours, rate budget spent): their other waiting items are not
    read until then, so a storm held back costs nothing per pass."""
    blocked = {} if blocked is None else blocked
    async with conn.transaction():
        # lock recipients, not items: one composer per recipient at a time, and intake (which only
        # takes a key-share lock on the contact) is never blocked
        cur = await conn.execute(
            """SELECT c.contact_id FROM notify_contacts c
               WHERE EXISTS (SELECT 1 FROM notify_items i WHERE i.contact_id = c.contact_id AND i.message_id IS NULL)
               ORDER BY c.contact_id LIMIT %s
               FOR NO KEY UPDATE OF c SKIP LOCKED""",
            (limit,),
        )
        locked = [r[0] for r in await cur.fetchall()]
        if not locked:
            return []
        cur = await conn.execute("SELECT now()")
        db_now: datetime = ((await cur.fetchone()) or (None,))[0]
        skip = [cid for cid in locked if blocked.get(cid, db_now) > db_now]
        cur = await conn.execute(
            """SELECT item_id, contact_id, alert_id, park_id, kind, severity, action, event_at, taken_at, now()
               FROM notify_items
               WHERE contact_id = ANY(%s) AND message_id IS NULL AND (severity = 'critical' OR contact_id <> ALL(%s))
               ORDER BY item_id""",
            (locked, skip),
        )
        rows = await cur.fetchall()
        if not rows:
            return []
        now: datetime = rows[0][9]
        by_contact: dict[int, list[Waiting]] = defaultdict(list)
        for r in rows:
            by_contact[r[1]].append(Waiting(r[0], r[2], r[3], r[4], r[5], r[6], r[7], r[8]))
        recips, langs = await _recipients(conn, sorted(by_contact), rules)
        for cid, recip in recips.items():
            if cid not in skip:
                until = blocked_until(recip, rules, now)
                if until is None:
                    blocked.pop(cid, None)
                else:
                    blocked[cid] = until
        plans = [
            p
            for cid, items in by_contact.items()
            if cid in recips
            for p in plan_recipient(items, recips[cid], rules, now)
        ]
        if not plans:
            return []
        alerts = await _alert_lines(conn, {i.alert_id for p in plans for i in p.items})
        for p in plans:
            lang, tz = langs[p.contact_id]
            lines = [_line(i, alerts.get(i.alert_id, {}), lang) for i in p.items]
            title, body = render(p.form, lines, lang, console_url, tz)
            first = p.items[0]
            cur = await conn.execute(
                """INSERT INTO notify_messages (contact_id, channel_id, idempotency_key, form, group_key, critical,
                                                language, title, body, items, first_event_at)
                   SELECT %s, channel_id, %s, %s, %s, %s, %s, %s, %s, %s, %s FROM notify_contacts WHERE contact_id = %s
                   RETURNING message_id""",
                (
                    p.contact_id,
                    f"pp-notify-{p.contact_id}-{first.item_id}",
                    p.form,
                    p.group_key,
                    p.critical,
                    lang,
                    title,
                    body,
                    len(p.items),
                    min(i.event_at for i in p.items),
                    p.contact_id,
                ),
            )
            mid = (await cur.fetchone() or (None,))[0]
            await conn.execute(
                "UPDATE notify_items SET message_id = %s WHERE item_id = ANY(%s)",
                (mid, [i.item_id for i in p.items]),
            )
        return plans
