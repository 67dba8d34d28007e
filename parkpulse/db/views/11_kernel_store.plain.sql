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
CREATE OR REPLACE FUNCTION pp_refresh_rollups(max_buckets integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    buckets timestamptz[];
    lo timestamptz;
    hi timestamptz;
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
    -- consecutive 15-minute buckets are recomputed as one range
    FOR lo, hi IN
        SELECT min(b), max(b) + interval '15 minutes'
        FROM (SELECT b, b - (row_number() OVER (ORDER BY b)) * interval '15 minutes' AS grp
              FROM unnest(buckets) AS b) s
        GROUP BY grp
    LOOP
        DELETE FROM rollup_15m WHERE bucket >= lo AND bucket < hi;
        INSERT INTO rollup_15m
        SELECT device_pk, metric_id, date_bin('15 minutes', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
               count(value)::int, sum(value), min(value), max(value),
               (array_agg(value ORDER BY ts) FILTER (WHERE value IS NOT NULL))[1], min(ts) FILTER (WHERE value IS NOT NULL),
               (array_agg(value ORDER BY ts DESC) FILTER (WHERE value IS NOT NULL))[1], max(ts) FILTER (WHERE value IS NOT NULL),
               max(quality)::smallint, (count(*) FILTER (WHERE quality = 0))::int
        FROM readings
        WHERE ts >= lo AND ts < hi
        GROUP BY 1, 2, 3;
    END LOOP;
    -- hours, then days, from the finer rollup
    FOR lo IN SELECT DISTINCT date_trunc('hour', b) FROM unnest(buckets) AS b LOOP
        DELETE FROM rollup_1h WHERE bucket = lo;
        INSERT INTO rollup_1h
        SELECT device_pk, metric_id, lo, sum(n)::int, sum(sum), min(min), max(max),
               (array_agg(first ORDER BY first_ts) FILTER (WHERE first IS NOT NULL))[1], min(first_ts),
               (array_agg(last ORDER BY last_ts DESC) FILTER (WHERE last IS NOT NULL))[1], max(last_ts),
               max(worst_quality)::smallint, sum(n_good)::int
        FROM rollup_15m WHERE bucket >= lo AND bucket < lo + interval '1 hour'
        GROUP BY 1, 2;
    END LOOP;
    FOR lo IN SELECT DISTINCT date_trunc('day', b, tz) FROM unnest(buckets) AS b LOOP
        hi := (((lo AT TIME ZONE tz) + interval '1 day') AT TIME ZONE tz);
        DELETE FROM rollup_1d WHERE bucket = lo;
        INSERT INTO rollup_1d
        SELECT device_pk, metric_id, lo, sum(n)::int, sum(sum), min(min), max(max),
               (array_agg(first ORDER BY first_ts) FILTER (WHERE first IS NOT NULL))[1], min(first_ts),
               (array_agg(last ORDER BY last_ts DESC) FILTER (WHERE last IS NOT NULL))[1], max(last_ts),
               max(worst_quality)::smallint, sum(n_good)::int
        FROM rollup_1h WHERE bucket >= lo AND bucket < hi
        GROUP BY 1, 2;
    END LOOP;
    -- the daily counter increases of those days and of the next day with data (issue 16)
    PERFORM pp_refresh_counter_daily(ARRAY(SELECT DISTINCT date_trunc('day', b, tz) FROM unnest(buckets) AS b));
    RETURN cardinality(buckets);
END $$;

-- the old entry point: everything dirty in one round
CREATE OR REPLACE FUNCTION pp_refresh_rollups() RETURNS integer
LANGUAGE sql AS $$ SELECT pp_refresh_rollups(NULL) $$;
