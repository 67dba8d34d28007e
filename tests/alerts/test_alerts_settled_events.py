"""Readers of the alert event stream never jump over an event whose transaction has not committed.

An identity value is drawn when the row is inserted, not when it commits: event 1 can be
written by a transaction still open while event 2 commits. A cursor moved to 2 would never see 1.
`pp_alert_events_settled_upto` stops the cursor before the first event of a transaction that
could still be in flight; the MQTT publisher and the notify intake both move their cursors by it.
"""

from __future__ import annotations

import psycopg

FIRE = """SELECT pp_alert_fire('rule-t', 1, 'threshold', 'warning', 'p1', 'p1-f1', 'gw-1', %s, 'nox_mg_m3', %s,
                                45.0, 30.0, 'mg/m3', 'zh', 'en', '{}'::jsonb)"""


def _event_of(conn: psycopg.Connection, alert_id: int) -> int:
    row = conn.execute("SELECT max(event_id) FROM alert_events WHERE alert_id = %s", (alert_id,)).fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


def test_the_cursor_stops_before_an_event_still_being_written(db: str) -> None:
    with (
        psycopg.connect(db) as slow,
        psycopg.connect(db, autocommit=True) as fast,
        psycopg.connect(db, autocommit=True) as reader,
    ):
        (first_alert,) = slow.execute(FIRE, ("stack-a", "gw-1/stack-a/nox")).fetchone()  # type: ignore[misc]
        early = _event_of(slow, first_alert)  # drawn first, not committed
        (second_alert,) = fast.execute(FIRE, ("stack-b", "gw-1/stack-b/nox")).fetchone()  # type: ignore[misc]
        late = _event_of(fast, second_alert)
        assert late > early
        (upto,) = reader.execute("SELECT pp_alert_events_settled_upto(0, 500)").fetchone()  # type: ignore[misc]
        assert upto < early, "the reader must not pass the uncommitted event"
        slow.commit()
        (upto,) = reader.execute("SELECT pp_alert_events_settled_upto(0, 500)").fetchone()  # type: ignore[misc]
        assert upto >= late
        (limited,) = reader.execute("SELECT pp_alert_events_settled_upto(0, 1)").fetchone()  # type: ignore[misc]
        assert limited == early
        (none_after,) = reader.execute("SELECT pp_alert_events_settled_upto(%s, 500)", (upto,)).fetchone()  # type: ignore[misc]
        assert none_after == upto
