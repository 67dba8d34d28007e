"""Intake: alert events → one item per (event, recipient), with a durable cursor.

One transaction takes the next events after the cursor, inserts an item for every recipient a
subscription gives them (UNIQUE (event_id, contact_id): a replay adds nothing), and moves the
cursor. A restart resumes at the cursor, so no event is skipped or taken twice.

Events are taken in id order only up to the first one whose transaction could still have a
lower-numbered sibling in flight: an event is "settled" when the transaction that wrote it is
older than every transaction still writing in this database (pg_stat_activity.backend_xid; the
SQL function pp_alert_events_settled_upto, shared with the alert engine's MQTT publisher). Not
covered: an identity value drawn by a transaction that has no xid yet (the moment between nextval
and the row's insert inside one statement), and writers of another role when the service's role
cannot see their sessions (grant it pg_read_all_stats).
"""

from __future__ import annotations

import psycopg

__all__ = ["CURSOR", "ensure_cursor", "take_events"]

CURSOR = "notify"

# the highest event id up to which every event is settled (parkpulse/db/views/40_alerts.sql)
_SETTLED_UPTO = "SELECT pp_alert_events_settled_upto(%s, %s)"

_RANK = "array_position(ARRAY['info','warning','critical'], {})"

# every (event, contact) a subscription gives; a user contact must hold a role that covers the
# alert (admin, inspector / park manager of its park, operator of its firm)
_ITEMS = f"""
WITH ev AS (
    SELECT e.event_id, e.at, e.action, a.alert_id, a.park_id, a.firm_id, a.kind, a.severity
    FROM alert_events e JOIN alerts a USING (alert_id)
    WHERE e.event_id > %(after)s AND e.event_id <= %(upto)s
)
INSERT INTO notify_items (event_id, contact_id, alert_id, park_id, kind, severity, action, event_at)
SELECT DISTINCT ev.event_id, c.contact_id, ev.alert_id, ev.park_id, ev.kind, ev.severity, ev.action, ev.at
FROM ev
JOIN notify_subscriptions s ON s.enabled
     AND (s.park_id IS NULL OR s.park_id = ev.park_id)
     AND (s.kinds IS NULL OR ev.kind = ANY (s.kinds))
     AND ev.action = ANY (s.actions)
     AND {_RANK.format("ev.severity")} >= {_RANK.format("s.min_severity")}
JOIN notify_contacts c ON c.enabled AND (
        c.contact_id = s.contact_id
     OR (s.user_name IS NOT NULL AND c.user_name = s.user_name
         AND (s.channel_id IS NULL OR c.channel_id = s.channel_id))
     OR (s.role IS NOT NULL AND c.user_name IS NOT NULL
         AND (s.channel_id IS NULL OR c.channel_id = s.channel_id)
         AND EXISTS (SELECT 1 FROM console_roles r
                     WHERE r.user_name = c.user_name AND r.role = s.role
                       AND (r.role = 'admin' OR r.park_id = ev.park_id OR r.firm_id = ev.firm_id))))
JOIN notify_channels ch ON ch.channel_id = c.channel_id AND ch.enabled
WHERE c.user_name IS NULL OR EXISTS (
        SELECT 1 FROM console_roles r JOIN console_users u USING (user_name)
        WHERE r.user_name = c.user_name AND NOT u.disabled
          AND (r.role = 'admin' OR r.park_id = ev.park_id OR r.firm_id = ev.firm_id))
ON CONFLICT (event_id, contact_id) DO NOTHING
"""


async def ensure_cursor(conn: psycopg.AsyncConnection, start: str) -> int:
    """The cursor, created at the newest event ("latest") or before the first ("beginning")."""
    cur = await conn.execute("SELECT event_id FROM notify_cursor WHERE name = %s", (CURSOR,))
    row = await cur.fetchone()
    if row:
        return int(row[0])
    if start == "beginning":
        first = 0
    else:
        cur = await conn.execute("SELECT coalesce(max(event_id), 0) FROM alert_events")
        first = int((await cur.fetchone() or (0,))[0])
    await conn.execute(
        "INSERT INTO notify_cursor (name, event_id) VALUES (%s, %s) ON CONFLICT DO NOTHING", (CURSOR, first)
    )
    cur = await conn.execute("SELECT event_id FROM notify_cursor WHERE name = %s", (CURSOR,))
    return int((await cur.fetchone() or (first,))[0])


async def take_events(conn: psycopg.AsyncConnection, limit: int = 2000) -> tuple[int, int]:
    """Take the next settled events; returns (events taken, items created)."""
    async with conn.transaction():
        cur = await conn.execute("SELECT event_id FROM notify_cursor WHERE name = %s FOR UPDATE", (CURSOR,))
        row = await cur.fetchone()
        if row is None:
            return 0, 0
        after = int(row[0])
        cur = await conn.execute(_SETTLED_UPTO, (after, limit))
        row = await cur.fetchone()
        upto = int(row[0]) if row and row[0] is not None else after
        if upto <= after:
            return 0, 0
        cur = await conn.execute(
            "SELECT count(*) FROM alert_events WHERE event_id > %s AND event_id <= %s", (after, upto)
        )
        counted = await cur.fetchone()
        n = int(counted[0]) if counted else 0
        cur = await conn.execute(_ITEMS, {"after": after, "upto": upto})
        items = cur.rowcount
        await conn.execute(
            "UPDATE notify_cursor SET event_id = %s, moved_at = now() WHERE name = %s", (upto, CURSOR)
        )
        return n, max(items, 0)
