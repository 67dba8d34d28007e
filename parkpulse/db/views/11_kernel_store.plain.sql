-- Kernel (parkpulse/db/), plain path: partitions and rollup refresh (tables in migrations 0002, 0004).
-- Idempotent: re-applied by every `parkpulse db migrate` (README.md in this folder).

-- Create the monthly partition holding `at` (idempotent, safe under concurrency).
-- Rows already caught by the default partition for that month are moved into it.
CREATE OR REPLACE FUNCTION pp_ensure_partition(at timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    lo timestamptz := date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    hi timestamptz := (date_trunc('month', at AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
    part text := format('readings_y%sm%s', to_char(lo AT TIME ZONE 'UTC', 'YYYY'), to_char(lo AT TIME ZONE 'UTC', 'MM'));
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN part;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('pp_ensure_partition'));
    IF to_regclass(part) IS NOT NULL THEN
        RETURN part;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE readings INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
    EXECUTE format('WITH moved AS (DELETE FROM readings_default WHERE ts >= %L AND ts < %L RETURNING *) '
                   'INSERT INTO %I SELECT * FROM moved', lo, hi, part);
    EXECUTE format('ALTER TABLE readings ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
    RETURN part;
END $$;

-- Rollups kept complete in bounded rounds (issue 10). Each dirty mark records when it was made,
-- so the rollup lag (how long the oldest unrefreshed mark has waited) can be measured on both
-- paths. pp_refresh_rollups(n) claims at most n distinct 15-minute buckets, newest first, so a
-- huge backfill is worked off over several rounds while live data keeps being refreshed.
--
-- Set-based (issue 16): one statement per rollup level for every claimed bucket, whatever their
-- number, no loop per range, hour or day. The 15-minute level aggregates the claimed ranges of
-- `readings` without sorting each group: count, sum, min, max and the first and last instants
-- come from one hash aggregate, and the first and last values are then looked up by the unique
-- key (device, metric, ts) only where a bucket holds more than one value (where it holds one,
-- first = last = min = max).
CREATE OR REPLACE FUNCTION pp_refresh_rollups(max_buckets integer) RETURNS integer
LANGUAGE plpgsql
SET work_mem = '64MB'  -- the hash aggregates of a large round stay in memory
AS $$
DECLARE
    buckets timestamptz[];
    los timestamptz[];
    his timestamptz[];
    hours timestamptz[];
    days timestamptz[];
    tz text := coalesce((SELECT value FROM store_info WHERE key = 'timezone'), 'UTC');
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('pp_refresh_rollups')) THEN
        RETURN 0;  -- another refresher is at work
    END IF;
    WITH pick AS (
        SELECT DISTINCT bucket FROM rollup_dirty ORDER BY bucket DESC LIMIT coalesce(max_buckets, 2147483647)
    ), d AS (
        DELETE FROM rollup_dirty WHERE bucket IN (SELECT bucket FROM pick) RETURNING bucket
    )
    SELECT coalesce(array_agg(DISTINCT bucket), '{}') INTO buckets FROM d;
    IF cardinality(buckets) = 0 THEN
        RETURN 0;
    END IF;
    -- consecutive 15-minute buckets form one range [lo, hi)
    SELECT array_agg(lo ORDER BY lo), array_agg(hi ORDER BY lo) INTO los, his
    FROM (SELECT min(b) AS lo, max(b) + interval '15 minutes' AS hi
          FROM (SELECT b, b - (row_number() OVER (ORDER BY b)) * interval '15 minutes' AS grp
                FROM unnest(buckets) AS b) s
          GROUP BY grp) r;
    hours := ARRAY(SELECT DISTINCT date_trunc('hour', b) FROM unnest(buckets) AS b);
    days := ARRAY(SELECT DISTINCT date_trunc('day', b, tz) FROM unnest(buckets) AS b);

    DELETE FROM rollup_15m WHERE bucket = ANY (buckets);
    INSERT INTO rollup_15m
    SELECT a.device_pk, a.metric_id, a.bucket, a.n, a.sum, a.min, a.max,
           CASE WHEN a.n <= 1 THEN a.min
                ELSE (SELECT r.value FROM readings r
                      WHERE r.device_pk = a.device_pk AND r.metric_id = a.metric_id AND r.ts = a.first_ts) END,
           a.first_ts,
           CASE WHEN a.n <= 1 THEN a.max
                ELSE (SELECT r.value FROM readings r
                      WHERE r.device_pk = a.device_pk AND r.metric_id = a.metric_id AND r.ts = a.last_ts) END,
           a.last_ts, a.worst_quality, a.n_good
    FROM unnest(los, his) AS g(lo, hi)
    CROSS JOIN LATERAL (
        SELECT x.device_pk, x.metric_id, date_bin('15 minutes', x.ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
               count(x.value)::int AS n, sum(x.value) AS sum, min(x.value) AS min, max(x.value) AS max,
               min(x.ts) FILTER (WHERE x.value IS NOT NULL) AS first_ts,
               max(x.ts) FILTER (WHERE x.value IS NOT NULL) AS last_ts,
               max(x.quality)::smallint AS worst_quality, (count(*) FILTER (WHERE x.quality = 0))::int AS n_good
        FROM readings x
        WHERE x.ts >= g.lo AND x.ts < g.hi
        GROUP BY 1, 2, 3
    ) a
    ORDER BY 1, 2, 3;  -- in key order: inserting in hash order scatters over the primary key

    -- hours, then days, from the finer rollup, one statement each. The finer rows are fetched by
    -- equality on their bucket (the quarters of the hours, the hours of the days: an index scan
    -- whatever the planner guesses about ranges) and grouped by hash: first and last come from the
    -- smallest / largest [epoch, value] pair, exact for timestamps to the microsecond.
    DELETE FROM rollup_1h WHERE bucket = ANY (hours);
    INSERT INTO rollup_1h
    SELECT r.device_pk, r.metric_id, date_trunc('hour', r.bucket), sum(r.n)::int, sum(r.sum), min(r.min), max(r.max),
           (min(ARRAY[date_part('epoch', r.first_ts), r.first]) FILTER (WHERE r.first IS NOT NULL))[2], min(r.first_ts),
           (max(ARRAY[date_part('epoch', r.last_ts), r.last]) FILTER (WHERE r.last IS NOT NULL))[2], max(r.last_ts),
           max(r.worst_quality)::smallint, sum(r.n_good)::int
    FROM rollup_15m r
    WHERE r.bucket = ANY (ARRAY(SELECT h + q * interval '15 minutes' FROM unnest(hours) AS h, generate_series(0, 3) AS q))
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3;

    DELETE FROM rollup_1d WHERE bucket = ANY (days);
    INSERT INTO rollup_1d
    SELECT r.device_pk, r.metric_id, date_trunc('day', r.bucket, tz), sum(r.n)::int, sum(r.sum), min(r.min), max(r.max),
           (min(ARRAY[date_part('epoch', r.first_ts), r.first]) FILTER (WHERE r.first IS NOT NULL))[2], min(r.first_ts),
           (max(ARRAY[date_part('epoch', r.last_ts), r.last]) FILTER (WHERE r.last IS NOT NULL))[2], max(r.last_ts),
           max(r.worst_quality)::smallint, sum(r.n_good)::int
    FROM rollup_1h r
    WHERE r.bucket = ANY (ARRAY(
        SELECT generate_series(d, (((d AT TIME ZONE tz) + interval '1 day') AT TIME ZONE tz) - interval '1 hour', interval '1 hour')
        FROM unnest(days) AS d))
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3;

    -- the daily counter increases of those days and of the next day with data (issue 16)
    PERFORM pp_refresh_counter_daily(days);
    RETURN cardinality(buckets);
END $$;

-- the old entry point: everything dirty in one round
CREATE OR REPLACE FUNCTION pp_refresh_rollups() RETURNS integer
LANGUAGE sql AS $$ SELECT pp_refresh_rollups(NULL) $$;
