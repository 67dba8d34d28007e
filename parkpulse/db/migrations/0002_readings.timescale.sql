-- parkpulse: no-transaction
-- Readings on TimescaleDB: a hypertable with compression and retention, and the rollups as
-- hierarchical continuous aggregates exposing the same columns as the plain path's tables.
-- Written against the TimescaleDB 2.x documentation (create_hypertable by_range, policies,
-- continuous aggregates on continuous aggregates, time_bucket with a time zone).
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE readings (
    device_pk integer          NOT NULL,
    metric_id smallint         NOT NULL,
    ts        timestamptz      NOT NULL,
    value     double precision,
    quality   smallint         NOT NULL DEFAULT 0 CHECK (quality BETWEEN 0 AND 4)
);
SELECT create_hypertable('readings', by_range('ts', INTERVAL '7 days'));
CREATE UNIQUE INDEX readings_key ON readings (device_pk, metric_id, ts);
ALTER TABLE readings SET (timescaledb.compress,
                          timescaledb.compress_segmentby = 'device_pk, metric_id',
                          timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('readings', INTERVAL '14 days');
SELECT add_retention_policy('readings', INTERVAL '{{retention}}');

-- Partitions are managed by TimescaleDB; kept so writers call one function on both paths.
CREATE FUNCTION pp_ensure_partition(at timestamptz) RETURNS text
LANGUAGE sql AS $$ SELECT 'readings'::text $$;

CREATE MATERIALIZED VIEW rollup_15m WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT device_pk, metric_id, time_bucket(INTERVAL '15 minutes', ts) AS bucket,
       count(value)::int AS n, sum(value) AS sum, min(value) AS min, max(value) AS max,
       first(value, ts) FILTER (WHERE value IS NOT NULL) AS first, min(ts) FILTER (WHERE value IS NOT NULL) AS first_ts,
       last(value, ts) FILTER (WHERE value IS NOT NULL) AS last, max(ts) FILTER (WHERE value IS NOT NULL) AS last_ts,
       max(quality)::smallint AS worst_quality, (count(*) FILTER (WHERE quality = 0))::int AS n_good
FROM readings
GROUP BY device_pk, metric_id, time_bucket(INTERVAL '15 minutes', ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW rollup_1h WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT device_pk, metric_id, time_bucket(INTERVAL '1 hour', bucket) AS bucket,
       sum(n)::int AS n, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       first(first, first_ts) AS first, min(first_ts) AS first_ts,
       last(last, last_ts) AS last, max(last_ts) AS last_ts,
       max(worst_quality)::smallint AS worst_quality, sum(n_good)::int AS n_good
FROM rollup_15m
GROUP BY device_pk, metric_id, time_bucket(INTERVAL '1 hour', bucket)
WITH NO DATA;

CREATE MATERIALIZED VIEW rollup_1d WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT device_pk, metric_id, time_bucket(INTERVAL '1 day', bucket, '{{timezone}}') AS bucket,
       sum(n)::int AS n, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       first(first, first_ts) AS first, min(first_ts) AS first_ts,
       last(last, last_ts) AS last, max(last_ts) AS last_ts,
       max(worst_quality)::smallint AS worst_quality, sum(n_good)::int AS n_good
FROM rollup_1h
GROUP BY device_pk, metric_id, time_bucket(INTERVAL '1 day', bucket, '{{timezone}}')
WITH NO DATA;

SELECT add_continuous_aggregate_policy('rollup_15m', start_offset => INTERVAL '30 days', end_offset => INTERVAL '15 minutes', schedule_interval => INTERVAL '1 minute');
SELECT add_continuous_aggregate_policy('rollup_1h', start_offset => INTERVAL '30 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '5 minutes');
SELECT add_continuous_aggregate_policy('rollup_1d', start_offset => INTERVAL '60 days', end_offset => INTERVAL '1 day', schedule_interval => INTERVAL '1 hour');

-- Writers record touched buckets on both paths; here the table only keeps the interface alike.
CREATE TABLE rollup_dirty (bucket timestamptz NOT NULL);
CREATE FUNCTION pp_refresh_rollups() RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM rollup_dirty;  -- continuous aggregates (real-time) need no manual refresh
    RETURN 0;
END $$;
