"""The definition `v_counter_daily` had before the maintained `counter_daily` table (issue 16):
a `lag()` over every daily rollup. Kept as the reference the table is tested against
(tests/kernel/test_counter_daily.py) and measured against (bench/views_5y.py); nothing in the
running system uses it. Migration 0017 carries its own frozen copy to fill the table once.
"""

from __future__ import annotations

__all__ = ["lag_counter_daily_sql"]

_SQL = """
WITH d AS (
    SELECT r.device_pk, r.metric_id, r.bucket, r.first, r.first_ts, r.last, r.last_ts, r.n, r.worst_quality,
           lag(r.last) OVER w AS prev_last, lag(r.last_ts) OVER w AS prev_last_ts
    FROM rollup_1d r JOIN metrics m USING (metric_id)
    WHERE m.kind IN ('counter', 'count') AND r.last IS NOT NULL
    WINDOW w AS (PARTITION BY r.device_pk, r.metric_id ORDER BY r.bucket)
), s AS (
    SELECT d.*, d.last - coalesce(d.prev_last, d.first) AS raw_delta,
           coalesce(ev.correction, 0) AS correction, coalesce(ev.n_events, 0) AS n_events
    FROM d LEFT JOIN LATERAL (
        SELECT sum(ce.correction) AS correction, count(*)::int AS n_events FROM counter_events ce
        WHERE ce.device_pk = d.device_pk AND ce.metric_id = d.metric_id
          AND ce.ts > coalesce(d.prev_last_ts, d.first_ts) AND ce.ts <= d.last_ts
    ) ev ON true
)
SELECT s.device_pk, s.metric_id, s.bucket, (s.bucket AT TIME ZONE '{tz}')::date AS day,
       greatest(s.raw_delta + s.correction, 0) AS increase, s.raw_delta, s.correction, s.n_events,
       (s.raw_delta + s.correction < 0) AS suspect, s.n, s.worst_quality, s.first_ts, s.last_ts
FROM s
"""


def lag_counter_daily_sql(timezone: str) -> str:
    """The old query, days in `timezone` (an IANA name such as Asia/Shanghai)."""
    if not timezone.replace("/", "").replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"timezone: not an IANA name (got {timezone!r})")
    return _SQL.format(tz=timezone)
