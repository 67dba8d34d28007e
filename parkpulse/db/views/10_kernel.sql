-- Kernel (parkpulse/db/): the store views, the contract for rules, console and Grafana
-- (docs/database.md), identical on the plain and the TimescaleDB path. Nobody queries partitions.
-- Idempotent: re-applied by every `parkpulse db migrate` (README.md in this folder).

CREATE OR REPLACE VIEW v_devices AS
SELECT d.device_pk, d.device_id, d.gateway_id, g.firm_id, f.park_id, f.cluster_id, d.workshop_id,
       d.name, d.kind, d.profile, d.meter_level, d.carrier, d.measures, d.source_type,
       d.poll_interval_s, d.rated_power_kw, d.enabled, d.fuel, d.age_class, d.registered_at
FROM devices d
JOIN gateways g USING (gateway_id)
JOIN firms f USING (firm_id);

CREATE OR REPLACE VIEW v_readings AS
SELECT d.park_id, d.firm_id, d.gateway_id, d.device_id, r.device_pk, m.name AS metric, m.unit,
       r.ts, r.value, r.quality
FROM readings r
JOIN v_devices d USING (device_pk)
JOIN metrics m USING (metric_id);

CREATE OR REPLACE VIEW v_readings_15m AS
SELECT d.park_id, d.firm_id, d.gateway_id, d.device_id, r.device_pk, m.name AS metric, m.unit, r.metric_id,
       r.bucket, r.n, CASE WHEN r.n > 0 THEN r.sum / r.n END AS avg, r.min, r.max,
       r.first, r.last, r.last_ts, r.worst_quality, r.n_good
FROM rollup_15m r
JOIN v_devices d USING (device_pk)
JOIN metrics m USING (metric_id);

CREATE OR REPLACE VIEW v_readings_1h AS
SELECT d.park_id, d.firm_id, d.gateway_id, d.device_id, r.device_pk, m.name AS metric, m.unit, r.metric_id,
       r.bucket, r.n, CASE WHEN r.n > 0 THEN r.sum / r.n END AS avg, r.min, r.max,
       r.first, r.last, r.last_ts, r.worst_quality, r.n_good
FROM rollup_1h r
JOIN v_devices d USING (device_pk)
JOIN metrics m USING (metric_id);

CREATE OR REPLACE VIEW v_readings_1d AS
SELECT d.park_id, d.firm_id, d.gateway_id, d.device_id, r.device_pk, m.name AS metric, m.unit, r.metric_id,
       r.bucket, (r.bucket AT TIME ZONE '{{timezone}}')::date AS day,
       r.n, CASE WHEN r.n > 0 THEN r.sum / r.n END AS avg, r.min, r.max,
       r.first, r.last, r.last_ts, r.worst_quality, r.n_good
FROM rollup_1d r
JOIN v_devices d USING (device_pk)
JOIN metrics m USING (metric_id);

-- Daily increase of every cumulative metric (energy counters and part counts), per device.
-- increase = (last of the day - last reading before the day) + corrections of counter events
-- flagged by the gateway in that span. A step that is still negative is never counted as
-- negative consumption: it is clamped to 0 and marked suspect for the inspector.
-- The rows live in the table counter_daily (migration 0017), kept current by the rollup refresher
-- through pp_refresh_counter_daily() (issue 16): reading them costs what the filter selects, where
-- the lag() over every daily rollup this view used to compute cost the whole history.
CREATE OR REPLACE VIEW v_counter_daily AS
SELECT c.device_pk, c.metric_id, c.bucket, c.day, c.increase, c.raw_delta, c.correction, c.n_events,
       c.suspect, c.n, c.worst_quality, c.first_ts, c.last_ts
FROM counter_daily c;

-- Recompute counter_daily for the local days `days` (rollup_1d buckets the refresher has just
-- brought up to date), set-based, in one statement: every counter's row of those days, and for
-- each of them the next day with data of the same counter (its "last before the day" changed).
-- Counter events need no mark of their own: a writer marks the bucket of the reading the event
-- rides on, and an event at ts always falls in the span of the day holding ts. Rows of those days
-- whose rollup is gone (or holds no value any more) are removed, and their next day recomputed.
-- Returns the number of rows written. Called by pp_refresh_rollups() (plain) and by
-- parkpulse.db.refresh_rollups() after the continuous aggregates' refresh (TimescaleDB).
CREATE OR REPLACE FUNCTION pp_refresh_counter_daily(days timestamptz[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    written integer;
BEGIN
    IF coalesce(cardinality(days), 0) = 0 THEN
        RETURN 0;
    END IF;
    WITH dd AS (
        SELECT DISTINCT b AS bucket FROM unnest(days) AS b
    ), cm AS (
        SELECT metric_id FROM metrics WHERE kind IN ('counter', 'count')
    ), gone AS (
        DELETE FROM counter_daily c
        WHERE c.bucket IN (SELECT bucket FROM dd)
          AND NOT EXISTS (SELECT 1 FROM rollup_1d r
                          WHERE r.device_pk = c.device_pk AND r.metric_id = c.metric_id
                            AND r.bucket = c.bucket AND r.last IS NOT NULL)
        RETURNING c.device_pk, c.metric_id, c.bucket
    ), changed AS (
        SELECT r.device_pk, r.metric_id, r.bucket
        FROM rollup_1d r
        WHERE r.bucket IN (SELECT bucket FROM dd) AND r.metric_id IN (SELECT metric_id FROM cm)
          AND r.last IS NOT NULL
    ), nxt AS (
        SELECT c.device_pk, c.metric_id, x.bucket
        FROM (SELECT * FROM changed UNION SELECT * FROM gone) c
        CROSS JOIN LATERAL (
            SELECT r.bucket FROM rollup_1d r
            WHERE r.device_pk = c.device_pk AND r.metric_id = c.metric_id AND r.bucket > c.bucket
              AND r.last IS NOT NULL
            ORDER BY r.bucket LIMIT 1
        ) x
    ), tgt AS (
        SELECT * FROM changed UNION SELECT * FROM nxt
    ), d AS (
        SELECT r.device_pk, r.metric_id, r.bucket, r.first, r.first_ts, r.last, r.last_ts, r.n,
               r.worst_quality, p.last AS prev_last, p.last_ts AS prev_last_ts
        FROM tgt
        JOIN rollup_1d r ON r.device_pk = tgt.device_pk AND r.metric_id = tgt.metric_id AND r.bucket = tgt.bucket
        LEFT JOIN LATERAL (
            SELECT q.last, q.last_ts FROM rollup_1d q
            WHERE q.device_pk = r.device_pk AND q.metric_id = r.metric_id AND q.bucket < r.bucket
              AND q.last IS NOT NULL
            ORDER BY q.bucket DESC LIMIT 1
        ) p ON true
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
    INSERT INTO counter_daily AS c
    SELECT s.device_pk, s.metric_id, s.bucket, (s.bucket AT TIME ZONE '{{timezone}}')::date,
           greatest(s.raw_delta + s.correction, 0), s.raw_delta, s.correction, s.n_events,
           (s.raw_delta + s.correction < 0), s.n, s.worst_quality, s.first_ts, s.last_ts
    FROM s
    ON CONFLICT (device_pk, metric_id, bucket) DO UPDATE SET
        day = excluded.day, increase = excluded.increase, raw_delta = excluded.raw_delta,
        correction = excluded.correction, n_events = excluded.n_events, suspect = excluded.suspect,
        n = excluded.n, worst_quality = excluded.worst_quality, first_ts = excluded.first_ts,
        last_ts = excluded.last_ts;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$;

-- Energy per device, carrier and day, from counter deltas.
CREATE OR REPLACE VIEW v_energy_daily AS
SELECT dv.park_id, dv.firm_id, dv.gateway_id, dv.device_id, c.device_pk, dv.workshop_id, dv.meter_level,
       m.name AS metric, m.carrier, m.direction, m.unit, c.day, c.increase AS quantity,
       c.raw_delta, c.correction, c.n_events, c.suspect, c.n AS n_readings, c.worst_quality
FROM v_counter_daily c
JOIN metrics m USING (metric_id)
JOIN v_devices dv USING (device_pk)
WHERE m.carrier IS NOT NULL;

-- Energy per firm, carrier, direction and day: the firm's boundary meters (meter_level 1, or
-- unset) only, so sub-meters are never counted twice. Written so the planner can estimate it (issue 10): with
-- `coalesce(meter_level, 1) = 1` PostgreSQL guessed 1 boundary meter of 62, picked a nested loop
-- and recomputed v_counter_daily's window once per meter: a one-year v_firm_energy_daily query
-- took 2.3 s on the demo's TimescaleDB store; with the filter below, estimated from the column's
-- statistics, 0.1 s. The meaning is unchanged: boundary meters (level 1) and meters without a level.
CREATE OR REPLACE VIEW v_firm_energy_daily AS
SELECT park_id, firm_id, carrier, direction, unit, day,
       sum(quantity) AS quantity,
       count(DISTINCT device_pk)::int AS meters,
       bool_or(suspect) AS suspect,
       max(worst_quality)::smallint AS worst_quality
FROM v_energy_daily
WHERE meter_level = 1 OR meter_level IS NULL
GROUP BY park_id, firm_id, carrier, direction, unit, day;

CREATE OR REPLACE VIEW v_gateway_status AS
SELECT g.gateway_id, g.firm_id, f.park_id, s.state, s.since, s.last_seen, s.version, s.spool_depth,
       coalesce(s.last_seq, q.max_seq) AS last_seq, q.contiguous_seq,
       (SELECT count(*) FROM seq_gaps sg WHERE sg.gateway_id = g.gateway_id AND sg.filled_at IS NULL)::int AS open_seq_gaps
FROM gateways g
JOIN firms f USING (firm_id)
LEFT JOIN gateway_status s USING (gateway_id)
LEFT JOIN gateway_seq q USING (gateway_id);

CREATE OR REPLACE VIEW v_data_gaps AS
SELECT 'seq'::text AS kind, sg.gateway_id, NULL::text AS device_id, NULL::text AS metric,
       NULL::timestamptz AS start_ts, NULL::timestamptz AS end_ts,
       (sg.to_seq - sg.from_seq + 1)::int AS count, 'batches never arrived'::text AS reason,
       sg.from_seq, sg.to_seq, sg.detected_at AS reported_at, sg.filled_at
FROM seq_gaps sg
UNION ALL
SELECT 'data', dg.gateway_id, dg.device_id, dg.metric, dg.start_ts, dg.end_ts, dg.count, dg.reason,
       NULL, NULL, dg.reported_at, NULL
FROM data_gaps dg;

-- Names for selectors and reports (Grafana variables, console lists): parks and firms with
-- their cluster, so nobody reads registry tables directly.
CREATE OR REPLACE VIEW v_parks AS
SELECT p.park_id, p.name, p.name_en, p.province, p.city, p.timezone, p.land_mu,
       (SELECT count(*) FROM firms f WHERE f.park_id = p.park_id)::int AS firms,
       p.special_limits_apply, p.special_limits_basis, p.special_limits_since
FROM parks p;

CREATE OR REPLACE VIEW v_firms AS
SELECT f.park_id, f.firm_id, f.name, f.name_en, f.cluster_id, c.name AS cluster_name, c.name_en AS cluster_name_en,
       f.industry, f.land_mu, f.size_class, f.production_start, f.credit_code
FROM firms f
LEFT JOIN clusters c USING (cluster_id);

-- registry_audit is append-only (its triggers are in migration 0020).
CREATE OR REPLACE FUNCTION pp_registry_audit_refuse() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'registry_audit is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
