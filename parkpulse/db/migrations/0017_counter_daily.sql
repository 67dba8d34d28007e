-- Daily counter increases as a maintained table (issue 16), on both storage paths.
-- v_counter_daily used to compute lag() over every daily rollup of every counter before any
-- filter applied, so a one-firm, one-year panel paid for the whole history. The rollup
-- refresher now keeps this table current for the days it refreshes (and the next day with data
-- of each counter, whose lag changes); v_counter_daily reads it (views/10_kernel.sql,
-- pp_refresh_counter_daily). Columns and meaning are those of the old view.
CREATE TABLE counter_daily (
    device_pk     integer     NOT NULL,
    metric_id     smallint    NOT NULL,
    bucket        timestamptz NOT NULL,  -- start of the local day (the rollup_1d bucket)
    day           date        NOT NULL,  -- that day in the store's time zone
    increase      double precision,      -- greatest(raw_delta + correction, 0)
    raw_delta     double precision,      -- last of the day - last before the day (or first of the day)
    correction    double precision NOT NULL,
    n_events      integer     NOT NULL,
    suspect       boolean,               -- raw_delta + correction < 0
    n             integer     NOT NULL,
    worst_quality smallint    NOT NULL,
    first_ts      timestamptz,
    last_ts       timestamptz NOT NULL,
    PRIMARY KEY (device_pk, metric_id, bucket)
);
-- park-day and date-range panels filter on the day; firm panels come in through device_pk
CREATE INDEX counter_daily_day ON counter_daily (day);
CREATE INDEX counter_daily_device_day ON counter_daily (device_pk, day);

-- Backfill from the daily rollups as they are now, with the definition of the old view.
-- Buckets still waiting in rollup_dirty are brought up to date by the refresher's next rounds.
INSERT INTO counter_daily
WITH d AS (
    SELECT r.device_pk, r.metric_id, r.bucket, r.first, r.first_ts, r.last, r.last_ts, r.n, r.worst_quality,
           lag(r.last)    OVER w AS prev_last,
           lag(r.last_ts) OVER w AS prev_last_ts
    FROM rollup_1d r
    JOIN metrics m USING (metric_id)
    WHERE m.kind IN ('counter', 'count') AND r.last IS NOT NULL
    WINDOW w AS (PARTITION BY r.device_pk, r.metric_id ORDER BY r.bucket)
), s AS (
    SELECT d.*,
           d.last - coalesce(d.prev_last, d.first) AS raw_delta,
           coalesce(ev.correction, 0) AS correction,
           coalesce(ev.n_events, 0) AS n_events
    FROM d
    LEFT JOIN LATERAL (
        SELECT sum(ce.correction) AS correction, count(*)::int AS n_events
        FROM counter_events ce
        WHERE ce.device_pk = d.device_pk AND ce.metric_id = d.metric_id
          AND ce.ts > coalesce(d.prev_last_ts, d.first_ts) AND ce.ts <= d.last_ts
    ) ev ON true
)
SELECT s.device_pk, s.metric_id, s.bucket,
       (s.bucket AT TIME ZONE coalesce((SELECT value FROM store_info WHERE key = 'timezone'), 'UTC'))::date,
       greatest(s.raw_delta + s.correction, 0), s.raw_delta, s.correction, s.n_events,
       (s.raw_delta + s.correction < 0), s.n, s.worst_quality, s.first_ts, s.last_ts
FROM s;
ANALYZE counter_daily;
