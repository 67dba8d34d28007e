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
CREATE OR REPLACE VIEW v_counter_daily AS
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
SELECT s.device_pk, s.metric_id, s.bucket, (s.bucket AT TIME ZONE '{{timezone}}')::date AS day,
       greatest(s.raw_delta + s.correction, 0) AS increase,
       s.raw_delta, s.correction, s.n_events,
       (s.raw_delta + s.correction < 0) AS suspect,
       s.n, s.worst_quality, s.first_ts, s.last_ts
FROM s;

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
