-- Costs (costs/): energy in yuan by time-of-use period, the demand or capacity charge, and the
-- cost of every other carrier, per firm and day / month (docs/database.md, "Cost views").
-- Built only on the contract views (v_readings_15m, v_counter_daily, v_firm_energy_daily,
-- v_devices, v_parks), so it is the same on the plain and the TimescaleDB path.
-- Idempotent: re-applied by every `parkpulse db migrate` (README.md in this folder).
--
-- Every yuan is quantity × price on one row that names the tariff, its version, the voltage class,
-- the period and how the price was formed (price_basis), and whether its figures were verified.

-- Electricity imported per firm and 15-minute slot, from the boundary meters (meter_level 1 or
-- unset, as v_firm_energy_daily). Per meter and bucket, the step of elec_import_kwh since the last
-- reading of the previous bucket (plus the corrections of counter events in that span; a step still
-- negative counts 0 and is suspect) has two parts: the rise within the bucket (last - first), which
-- belongs to the bucket, and the rest, the rise between the previous bucket's last reading and this
-- bucket's first, which is spread over the slots from that reading to the bucket's start in
-- proportion to time (exact when readings fall on the quarter hours, as regular polling does; hourly
-- readings are spread over their hour). A span over 20 minutes (sparse readings, a gap) is an
-- estimate and also counted in spread_kwh.
-- Local time is the park's (v_parks.timezone): day, month and slot (0 = 00:00-00:15 … 95).
CREATE OR REPLACE VIEW v_firm_elec_15m AS
WITH b AS (
    SELECT r.park_id, r.firm_id, r.device_pk, r.metric_id, r.bucket, r.first, r.last, r.last_ts,
           lag(r.last)    OVER w AS prev_last,
           lag(r.last_ts) OVER w AS prev_last_ts
    FROM v_readings_15m r
    JOIN v_devices d USING (device_pk)
    WHERE r.metric = 'elec_import_kwh' AND r.last IS NOT NULL
      AND (d.meter_level = 1 OR d.meter_level IS NULL)
    WINDOW w AS (PARTITION BY r.park_id, r.firm_id, r.device_pk, r.metric_id ORDER BY r.bucket)
), iv AS (
    SELECT b.park_id, b.firm_id, b.device_pk, b.bucket, b.prev_last_ts,
           b.last - coalesce(b.prev_last, b.first) + coalesce(ev.correction, 0) AS delta,
           b.last - coalesce(b.first, b.last) AS within
    FROM b
    LEFT JOIN LATERAL (
        SELECT sum(ce.correction) AS correction
        FROM counter_events ce
        WHERE ce.device_pk = b.device_pk AND ce.metric_id = b.metric_id
          AND ce.ts > coalesce(b.prev_last_ts, b.bucket) AND ce.ts <= b.last_ts
    ) ev ON true
), parts AS (
    SELECT iv.*,
           CASE WHEN iv.delta > 0 THEN greatest(least(iv.within, iv.delta), 0) ELSE 0 END AS in_kwh
    FROM iv
), split AS (
    -- one reference to parts (a CTE read twice is materialised, and a filter on the firm or the
    -- park would then no longer reach v_readings_15m: every boundary meter's history was read)
    SELECT p.park_id, p.firm_id, p.device_pk, x.slot_start, x.kwh, x.suspect, x.spread
    FROM parts p
    CROSS JOIN LATERAL (
        SELECT p.bucket AS slot_start, p.in_kwh AS kwh, p.delta < 0 AS suspect, false AS spread
        UNION ALL
        SELECT s,
               (p.delta - p.in_kwh)
                 * extract(epoch FROM least(p.bucket, s + interval '15 minutes') - greatest(p.prev_last_ts, s))::float8
                 / extract(epoch FROM p.bucket - p.prev_last_ts)::float8,
               false, (p.bucket - p.prev_last_ts) > interval '20 minutes'
        FROM generate_series(date_bin('15 minutes', p.prev_last_ts, timestamptz '2000-01-01 00:00:00+00'),
                             p.bucket - interval '15 minutes', interval '15 minutes') s
        WHERE p.prev_last_ts IS NOT NULL AND p.delta > p.in_kwh
    ) x
), g AS (
    SELECT park_id, firm_id, slot_start AS bucket,
           sum(kwh) AS kwh,
           count(DISTINCT device_pk)::int AS meters,
           bool_or(suspect) AS suspect,
           coalesce(sum(kwh) FILTER (WHERE spread), 0) AS spread_kwh
    FROM split
    GROUP BY park_id, firm_id, slot_start
)
SELECT g.park_id, g.firm_id, g.bucket,
       (g.bucket AT TIME ZONE p.timezone)::date AS day,
       extract(month FROM g.bucket AT TIME ZONE p.timezone)::smallint AS month,
       (extract(hour FROM g.bucket AT TIME ZONE p.timezone)::int * 4
        + extract(minute FROM g.bucket AT TIME ZONE p.timezone)::int / 15)::smallint AS slot,
       g.kwh, g.meters, g.suspect, g.spread_kwh
FROM g
JOIN v_parks p USING (park_id);

-- Each 15-minute slot with the firm's electricity tariff in force that day, the tariff version in
-- force that day, the slot's period in that version's schedule, and the period's price for the
-- firm's voltage class in that month. Without an assignment the tariff columns are NULL.
CREATE OR REPLACE VIEW v_firm_elec_tou_15m AS
-- The tariff is looked up per slot row by LATERAL index probes (every join on a full key): the
-- planner cannot estimate the rows of v_firm_elec_15m (window, spread), guessed a few dozen for a
-- month of a park, and chose nested loops scanning every slot of the tariff version per row
-- (50 firms × 1 month: 23 s; the probes: see docs/scaling.md, section 6).
SELECT e.park_id, e.firm_id, e.bucket, e.day, e.month, e.slot, e.kwh, e.meters, e.suspect, e.spread_kwh,
       t.tariff_id, t.tariff_version, t.voltage_class, t.period,
       t.price, t.price * e.kwh AS cost_yuan, t.price_basis, t.verified
FROM v_firm_elec_15m e
LEFT JOIN LATERAL (
    SELECT ft.tariff_id, tv.version AS tariff_version, ft.voltage_class, ts.period, tp.price,
           tp.basis AS price_basis, (tv.verified AND tp.verified) AS verified
    FROM firm_tariffs ft
    LEFT JOIN tariff_versions tv
           ON tv.tariff_id = ft.tariff_id
          AND e.day >= tv.valid_from AND (tv.valid_to IS NULL OR e.day < tv.valid_to)
    LEFT JOIN tariff_slots ts
           ON ts.tariff_id = tv.tariff_id AND ts.version = tv.version AND ts.month = e.month AND ts.slot = e.slot
    LEFT JOIN tariff_prices tp
           ON tp.tariff_id = tv.tariff_id AND tp.version = tv.version AND tp.voltage_class = ft.voltage_class
          AND tp.period = ts.period
          AND e.day >= tp.price_from AND (tp.price_to IS NULL OR e.day < tp.price_to)
    WHERE ft.firm_id = e.firm_id AND ft.carrier = 'electricity'
      AND e.day >= ft.valid_from AND (ft.valid_to IS NULL OR e.day < ft.valid_to)
) t ON true;

-- Electricity per firm, day and period, priced.
CREATE OR REPLACE VIEW v_firm_elec_tou_daily AS
SELECT park_id, firm_id, day, period, tariff_id, tariff_version, voltage_class, price, price_basis, verified,
       sum(kwh) AS kwh, sum(cost_yuan) AS cost_yuan, count(*)::int AS slots,
       bool_or(suspect) AS suspect, sum(spread_kwh) AS spread_kwh
FROM v_firm_elec_tou_15m
GROUP BY park_id, firm_id, day, period, tariff_id, tariff_version, voltage_class, price, price_basis, verified;

-- The computed period split against the meters' own per-tariff registers
-- (elec_import_kwh_{sharp,peak,flat,valley}, boundary meters), for days the registers report.
-- mismatch when |computed - register| > max(tolerance_kwh, tolerance_pct % of the register)
-- (cost_params, from the tariffs file; 1 kWh and 2 % when not synced).
CREATE OR REPLACE VIEW v_firm_tou_register_check AS
WITH reg AS NOT MATERIALIZED (
    SELECT dv.park_id, dv.firm_id, c.day, substring(m.name FROM '^elec_import_kwh_(.*)$') AS period,
           sum(c.increase) AS register_kwh, count(DISTINCT c.device_pk)::int AS meters,
           bool_or(c.suspect) AS suspect
    FROM v_counter_daily c
    JOIN metrics m USING (metric_id)
    JOIN v_devices dv USING (device_pk)
    WHERE m.name IN ('elec_import_kwh_sharp', 'elec_import_kwh_peak', 'elec_import_kwh_flat', 'elec_import_kwh_valley')
      AND (dv.meter_level = 1 OR dv.meter_level IS NULL)
    GROUP BY dv.park_id, dv.firm_id, c.day, m.name
), days AS NOT MATERIALIZED (
    SELECT DISTINCT park_id, firm_id, day FROM reg
), comp AS (
    SELECT t.firm_id, t.day, t.period, sum(t.kwh) AS computed_kwh, min(t.tariff_id) AS tariff_id,
           min(t.tariff_version) AS tariff_version
    FROM v_firm_elec_tou_daily t
    JOIN days d USING (firm_id, day)
    WHERE t.period IS NOT NULL
    GROUP BY t.firm_id, t.day, t.period
), tol AS (
    SELECT coalesce((SELECT value FROM cost_params WHERE key = 'register_tolerance_pct'), 2.0) AS pct,
           coalesce((SELECT value FROM cost_params WHERE key = 'register_tolerance_kwh'), 1.0) AS kwh
), grid AS (
    SELECT d.park_id, d.firm_id, d.day, p.period
    FROM days d CROSS JOIN (VALUES ('sharp'), ('peak'), ('flat'), ('valley')) AS p(period)
)
SELECT g.park_id, g.firm_id, g.day, g.period,
       coalesce(c.computed_kwh, 0) AS computed_kwh,
       coalesce(r.register_kwh, 0) AS register_kwh,
       coalesce(c.computed_kwh, 0) - coalesce(r.register_kwh, 0) AS diff_kwh,
       greatest(tol.kwh, tol.pct / 100.0 * coalesce(r.register_kwh, 0)) AS tolerance_kwh,
       abs(coalesce(c.computed_kwh, 0) - coalesce(r.register_kwh, 0))
           > greatest(tol.kwh, tol.pct / 100.0 * coalesce(r.register_kwh, 0)) AS mismatch,
       c.tariff_id, c.tariff_version, r.meters AS register_meters, coalesce(r.suspect, false) AS suspect
FROM grid g
CROSS JOIN tol
LEFT JOIN reg r USING (park_id, firm_id, day, period)
LEFT JOIN comp c ON c.firm_id = g.firm_id AND c.day = g.day AND c.period = g.period;

-- The month's maximum 15-minute demand per firm: 4 × the largest 15-minute kWh (computed), and
-- where boundary meters report max_demand_kw (the meter's demand register of the billing month)
-- the sum over those meters of their largest value in the month (reported; it wins).
CREATE OR REPLACE VIEW v_firm_demand_monthly AS
WITH c AS (
    SELECT park_id, firm_id, date_trunc('month', day)::date AS month,
           4 * max(kwh) AS computed_kw,
           (array_agg(bucket ORDER BY kwh DESC, bucket))[1] AS computed_at,
           max(day) AS last_day
    FROM v_firm_elec_15m
    GROUP BY park_id, firm_id, date_trunc('month', day)
), r AS (
    SELECT park_id, firm_id, month, sum(kw) AS reported_kw, count(*)::int AS reported_meters
    FROM (
        SELECT r.park_id, r.firm_id, r.device_pk,
               date_trunc('month', r.bucket AT TIME ZONE p.timezone)::date AS month, max(r.max) AS kw
        FROM v_readings_15m r
        JOIN v_devices d USING (device_pk)
        JOIN v_parks p ON p.park_id = r.park_id
        WHERE r.metric = 'max_demand_kw' AND r.max IS NOT NULL
          AND (d.meter_level = 1 OR d.meter_level IS NULL)
        GROUP BY r.park_id, r.firm_id, r.device_pk, date_trunc('month', r.bucket AT TIME ZONE p.timezone)
    ) x
    GROUP BY park_id, firm_id, month
)
SELECT c.park_id, c.firm_id, c.month, c.computed_kw, c.computed_at, r.reported_kw, r.reported_meters,
       coalesce(r.reported_kw, c.computed_kw) AS demand_kw,
       CASE WHEN r.reported_kw IS NOT NULL THEN 'reported' ELSE 'computed' END AS demand_basis,
       c.last_day
FROM c
LEFT JOIN r USING (park_id, firm_id, month);

-- The two-part tariff's charge of the month: demand (需量, kW × yuan/kW·month) or capacity (容量,
-- transformer kVA × yuan/kVA·month), by the assignment and tariff version in force on the last day
-- of the month that has electricity data.
CREATE OR REPLACE VIEW v_firm_capacity_charge_monthly AS
SELECT dm.park_id, dm.firm_id, dm.month, ft.capacity_basis, ft.tariff_id, tv.version AS tariff_version,
       ft.voltage_class,
       CASE ft.capacity_basis WHEN 'demand' THEN dm.demand_kw ELSE ft.transformer_kva END AS quantity,
       CASE ft.capacity_basis WHEN 'demand' THEN 'kW' ELSE 'kVA' END AS unit,
       CASE ft.capacity_basis WHEN 'demand' THEN tp.demand_yuan_per_kw_month
            ELSE tp.capacity_yuan_per_kva_month END AS price,
       CASE ft.capacity_basis WHEN 'demand' THEN 'yuan/kW·month' ELSE 'yuan/kVA·month' END AS price_unit,
       CASE ft.capacity_basis WHEN 'demand' THEN dm.demand_kw * tp.demand_yuan_per_kw_month
            ELSE ft.transformer_kva * tp.capacity_yuan_per_kva_month END AS cost_yuan,
       CASE ft.capacity_basis
            WHEN 'demand' THEN 'maximum demand ' || dm.demand_basis
                 || CASE WHEN dm.demand_basis = 'computed'
                         THEN ': 4 × the largest 15-minute kWh, at ' || to_char(dm.computed_at, 'YYYY-MM-DD"T"HH24:MI:SSOF')
                         ELSE ': max_demand_kw of ' || dm.reported_meters || ' boundary meter(s)' END
            ELSE 'transformer capacity of the assignment' END AS price_basis,
       (tv.verified AND tp.verified) AS verified,
       dm.demand_kw, dm.demand_basis
FROM v_firm_demand_monthly dm
JOIN firm_tariffs ft
  ON ft.firm_id = dm.firm_id AND ft.carrier = 'electricity' AND ft.capacity_basis <> 'none'
 AND dm.last_day >= ft.valid_from AND (ft.valid_to IS NULL OR dm.last_day < ft.valid_to)
JOIN tariff_versions tv
  ON tv.tariff_id = ft.tariff_id
 AND dm.last_day >= tv.valid_from AND (tv.valid_to IS NULL OR dm.last_day < tv.valid_to)
LEFT JOIN tariff_two_part tp
  ON tp.tariff_id = tv.tariff_id AND tp.version = tv.version AND tp.voltage_class = ft.voltage_class;

-- Every other carrier (natural gas, water, steam …) per firm and day: the imported quantity of
-- v_firm_energy_daily × the unit price of the firm's tariff for that carrier (NULL without one, or
-- when the tariff's unit is not the metered unit).
CREATE OR REPLACE VIEW v_firm_carrier_cost_daily AS
SELECT e.park_id, e.firm_id, e.day, e.carrier, e.quantity, e.unit,
       ft.tariff_id, tv.version AS tariff_version, tp.price, tp.price_unit,
       e.quantity * tp.price AS cost_yuan, tp.basis AS price_basis,
       (tv.verified AND tp.verified) AS verified, e.suspect
FROM v_firm_energy_daily e
LEFT JOIN firm_tariffs ft
       ON ft.firm_id = e.firm_id AND ft.carrier = e.carrier
      AND e.day >= ft.valid_from AND (ft.valid_to IS NULL OR e.day < ft.valid_to)
LEFT JOIN tariff_versions tv
       ON tv.tariff_id = ft.tariff_id AND tv.unit = e.unit
      AND e.day >= tv.valid_from AND (tv.valid_to IS NULL OR e.day < tv.valid_to)
LEFT JOIN tariff_prices tp
       ON tp.tariff_id = tv.tariff_id AND tp.version = tv.version AND tp.voltage_class = 'any' AND tp.period = 'all'
      AND e.day >= tp.price_from AND (tp.price_to IS NULL OR e.day < tp.price_to)
WHERE e.direction = 'import' AND e.carrier <> 'electricity';

-- Contract view: cost per firm, day, carrier and period (electricity: sharp/peak/flat/valley;
-- other carriers: 'all'). cost_yuan = quantity × price, unrounded; NULL where no tariff applies.
CREATE OR REPLACE VIEW v_firm_cost_daily AS
SELECT t.park_id, t.firm_id, t.day, 'electricity'::text AS carrier, coalesce(t.period, 'unpriced') AS period,
       t.kwh AS quantity, 'kWh'::text AS unit, t.price, 'yuan/kWh'::text AS price_unit, t.cost_yuan,
       t.tariff_id, t.tariff_version, t.voltage_class, t.price_basis, t.verified, t.suspect,
       rc.mismatch AS register_mismatch, rc.register_kwh
FROM v_firm_elec_tou_daily t
LEFT JOIN v_firm_tou_register_check rc
       ON rc.firm_id = t.firm_id AND rc.day = t.day AND rc.period = t.period
UNION ALL
SELECT c.park_id, c.firm_id, c.day, c.carrier, 'all', c.quantity, c.unit, c.price, c.price_unit, c.cost_yuan,
       c.tariff_id, c.tariff_version, NULL, c.price_basis, c.verified, c.suspect, NULL, NULL
FROM v_firm_carrier_cost_daily c;

-- Contract view: cost per firm, month, carrier, period and price (a price change within the month
-- gives two rows), plus the two-part tariff's charge as period 'demand' or 'capacity'.
CREATE OR REPLACE VIEW v_firm_cost_monthly AS
SELECT park_id, firm_id, date_trunc('month', day)::date AS month, carrier, period,
       sum(quantity) AS quantity, unit, price, price_unit, sum(cost_yuan) AS cost_yuan,
       tariff_id, tariff_version, voltage_class, price_basis, verified,
       bool_or(suspect) AS suspect, bool_or(register_mismatch) AS register_mismatch,
       count(DISTINCT day)::int AS days
FROM v_firm_cost_daily
GROUP BY park_id, firm_id, date_trunc('month', day), carrier, period, unit, price, price_unit,
         tariff_id, tariff_version, voltage_class, price_basis, verified
UNION ALL
SELECT park_id, firm_id, month, 'electricity', capacity_basis, quantity, unit, price, price_unit, cost_yuan,
       tariff_id, tariff_version, voltage_class, price_basis, verified, false, NULL, NULL
FROM v_firm_capacity_charge_monthly;

-- ---------------------------------------------------------------------------------------------
-- Bounded cost functions (issues 15, 16): the cost views above for a list of firms and a range of
-- local days, reading only what that range needs. The views cannot be filtered by time (the lag()
-- window of v_firm_elec_15m blocks any time condition, and a slot's day is local time), so a query
-- for one firm-month of the views prices the firm's whole 15-minute history; these functions take
-- the bounds first. Same columns and meanings as the views (they return the views' row types);
-- tests/costs checks that a function over a range equals its view filtered to that range.
-- p_firms NULL = every firm. SECURITY DEFINER (like a view, they run with their owner's rights, so
-- Grafana's read-only role needs only EXECUTE on them: deploy/compose/grafana-grants.sql).
-- ---------------------------------------------------------------------------------------------

-- The local-midnight bounds [lo, hi) of the days p_from .. p_to in the parks of p_firms (a firm's
-- day is its park's), after checking the arguments.
CREATE OR REPLACE FUNCTION pp_cost_bounds(p_fn text, p_firms text[], p_from date, p_to date,
                                          OUT lo timestamptz, OUT hi timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF p_from IS NULL OR p_to IS NULL THEN
        RAISE EXCEPTION '%: p_from and p_to must be dates (got p_from %, p_to %)',
            p_fn, coalesce(p_from::text, 'NULL'), coalesce(p_to::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_from > p_to THEN
        RAISE EXCEPTION '%: p_from % is after p_to %', p_fn, p_from, p_to
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT min(p_from::timestamp AT TIME ZONE p.timezone), max((p_to + 1)::timestamp AT TIME ZONE p.timezone)
    INTO lo, hi
    FROM firms f JOIN parks p USING (park_id)
    WHERE p_firms IS NULL OR f.firm_id = ANY (p_firms);
END $$;

-- v_firm_elec_15m for the days p_from .. p_to (local) of p_firms. Reads v_readings_15m for the
-- firms' boundary meters only: the buckets of the range, plus per meter the last bucket before it
-- (the lag: the rise since that reading belongs partly to the range's first slots) and the first
-- bucket after it (a rise spread back over a gap can reach the range's last slots). So the result
-- equals the view's rows of those days, at a cost proportional to the range.
CREATE OR REPLACE FUNCTION pp_firm_elec_15m(p_firms text[], p_from date, p_to date)
RETURNS SETOF v_firm_elec_15m
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp SET enable_nestloop = on SET enable_mergejoin = on AS $$
DECLARE
    v_lo timestamptz;
    v_hi timestamptz;
    v_events boolean;
BEGIN
    SELECT lo, hi INTO v_lo, v_hi FROM pp_cost_bounds('pp_firm_elec_15m', p_firms, p_from, p_to);
    IF v_lo IS NULL THEN
        RETURN;
    END IF;
    -- whether any of the meters has a counter event at all: if not, the per-bucket look-up of the
    -- corrections below is skipped (it was a probe per bucket, about an eighth of the time)
    SELECT EXISTS (
        SELECT FROM counter_events ce JOIN v_devices d USING (device_pk)
        WHERE (p_firms IS NULL OR d.firm_id = ANY (p_firms)) AND (d.meter_level = 1 OR d.meter_level IS NULL)
    ) INTO v_events;
    RETURN QUERY
    WITH m AS MATERIALIZED (
        SELECT d.device_pk, mt.metric_id
        FROM v_devices d CROSS JOIN metrics mt
        WHERE (p_firms IS NULL OR d.firm_id = ANY (p_firms))
          AND (d.meter_level = 1 OR d.meter_level IS NULL)
          AND mt.name = 'elec_import_kwh'
    ), r AS (
        SELECT r.park_id, r.firm_id, r.device_pk, r.metric_id, r.bucket, r.first, r.last, r.last_ts
        FROM v_readings_15m r
        WHERE r.device_pk IN (SELECT device_pk FROM m) AND r.metric = 'elec_import_kwh'
          AND r.last IS NOT NULL AND r.bucket >= v_lo AND r.bucket < v_hi
        UNION ALL
        SELECT x.*
        FROM m CROSS JOIN LATERAL (
            SELECT r.park_id, r.firm_id, r.device_pk, r.metric_id, r.bucket, r.first, r.last, r.last_ts
            FROM v_readings_15m r
            WHERE r.device_pk = m.device_pk AND r.metric_id = m.metric_id AND r.last IS NOT NULL
              AND r.bucket < v_lo
            ORDER BY r.bucket DESC LIMIT 1
        ) x
        UNION ALL
        SELECT x.*
        FROM m CROSS JOIN LATERAL (
            SELECT r.park_id, r.firm_id, r.device_pk, r.metric_id, r.bucket, r.first, r.last, r.last_ts
            FROM v_readings_15m r
            WHERE r.device_pk = m.device_pk AND r.metric_id = m.metric_id AND r.last IS NOT NULL
              AND r.bucket >= v_hi
            ORDER BY r.bucket LIMIT 1
        ) x
    ), b AS (
        SELECT r.park_id, r.firm_id, r.device_pk, r.metric_id, r.bucket, r.first, r.last, r.last_ts,
               lag(r.last)    OVER w AS prev_last,
               lag(r.last_ts) OVER w AS prev_last_ts
        FROM r
        WINDOW w AS (PARTITION BY r.park_id, r.firm_id, r.device_pk, r.metric_id ORDER BY r.bucket)
    ), iv AS (
        SELECT b.park_id, b.firm_id, b.device_pk, b.bucket, b.prev_last_ts,
               b.last - coalesce(b.prev_last, b.first)
                 + coalesce(CASE WHEN v_events THEN (
                       SELECT sum(ce.correction)
                       FROM counter_events ce
                       WHERE ce.device_pk = b.device_pk AND ce.metric_id = b.metric_id
                         AND ce.ts > coalesce(b.prev_last_ts, b.bucket) AND ce.ts <= b.last_ts) END, 0) AS delta,
               b.last - coalesce(b.first, b.last) AS within
        FROM b
    ), parts AS (
        SELECT iv.*,
               CASE WHEN iv.delta > 0 THEN greatest(least(iv.within, iv.delta), 0) ELSE 0 END AS in_kwh
        FROM iv
    ), split AS (
        -- the view's split as one series per bucket: its last element is the bucket itself (the rise
        -- within it), the earlier ones the slots the rest is spread over (none when nothing is spread)
        SELECT p.park_id, p.firm_id, p.device_pk, x.s AS slot_start,
               CASE WHEN x.s = p.bucket THEN p.in_kwh
                    ELSE (p.delta - p.in_kwh)
                         * extract(epoch FROM least(p.bucket, x.s + interval '15 minutes') - greatest(p.prev_last_ts, x.s))::float8
                         / extract(epoch FROM p.bucket - p.prev_last_ts)::float8 END AS kwh,
               x.s = p.bucket AND p.delta < 0 AS suspect,
               x.s <> p.bucket AND (p.bucket - p.prev_last_ts) > interval '20 minutes' AS spread
        FROM parts p
        CROSS JOIN LATERAL generate_series(
            CASE WHEN p.prev_last_ts IS NOT NULL AND p.delta > p.in_kwh
                 THEN date_bin('15 minutes', p.prev_last_ts, timestamptz '2000-01-01 00:00:00+00')
                 ELSE p.bucket END,
            p.bucket, interval '15 minutes') AS x(s)
        WHERE x.s >= v_lo AND x.s < v_hi
    ), g AS (
        SELECT split.park_id, split.firm_id, split.slot_start AS bucket,
               sum(split.kwh) AS kwh,
               count(DISTINCT split.device_pk)::int AS meters,
               bool_or(split.suspect) AS suspect,
               coalesce(sum(split.kwh) FILTER (WHERE split.spread), 0) AS spread_kwh
        FROM split
        GROUP BY split.park_id, split.firm_id, split.slot_start
    ), out AS (
        SELECT g.park_id, g.firm_id, g.bucket,
               l.ts::date AS day,
               extract(month FROM l.ts)::smallint AS month,
               (extract(hour FROM l.ts)::int * 4 + extract(minute FROM l.ts)::int / 15)::smallint AS slot,
               g.kwh, g.meters, g.suspect, g.spread_kwh
        FROM g
        JOIN v_parks p USING (park_id)
        CROSS JOIN LATERAL (SELECT g.bucket AT TIME ZONE p.timezone AS ts OFFSET 0) l
    )
    SELECT * FROM out WHERE out.day BETWEEN p_from AND p_to;
END $$;

-- v_firm_elec_tou_15m for the days p_from .. p_to of p_firms, priced set-based (issues 15, 16):
-- first the small grids of the range — per assignment and day the tariff version in force (a), the
-- slot -> period map of those versions (sm), per assignment, version, day and period the price (pr)
-- — then pp_firm_elec_15m's slots hash-joined to them on full equality keys, a hash lookup per slot
-- instead of the view's per-slot index probes (docs/scaling.md, "Costs"). The grids are MATERIALIZED
-- so that no index is there to tempt the planner into a nested loop per slot. Same rows as the view:
-- each join below is the view's LATERAL join with its day condition moved into the grid.
CREATE OR REPLACE FUNCTION pp_firm_elec_tou_15m(p_firms text[], p_from date, p_to date)
RETURNS SETOF v_firm_elec_tou_15m
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp SET enable_nestloop = off SET enable_mergejoin = off SET jit = off AS $$
    WITH a AS MATERIALIZED (
        SELECT ft.assignment_id, ft.firm_id, d.day, ft.tariff_id, ft.voltage_class,
               tv.version, tv.verified
        FROM firm_tariffs ft
        CROSS JOIN LATERAL (
            SELECT g::date AS day
            FROM generate_series(greatest(ft.valid_from, p_from)::timestamp,
                                 least(coalesce(ft.valid_to - 1, p_to), p_to)::timestamp, interval '1 day') g
        ) d
        LEFT JOIN tariff_versions tv
               ON tv.tariff_id = ft.tariff_id
              AND d.day >= tv.valid_from AND (tv.valid_to IS NULL OR d.day < tv.valid_to)
        WHERE ft.carrier = 'electricity' AND (p_firms IS NULL OR ft.firm_id = ANY (p_firms))
          AND ft.valid_from <= p_to AND (ft.valid_to IS NULL OR ft.valid_to > p_from)
    ), sm AS MATERIALIZED (
        SELECT ts.tariff_id, ts.version, ts.month, ts.slot, ts.period
        FROM tariff_slots ts
        WHERE (ts.tariff_id, ts.version) IN (SELECT a.tariff_id, a.version FROM a)
    ), pr AS MATERIALIZED (
        SELECT a.assignment_id, a.version, a.day, tp.period, tp.price, tp.basis, tp.verified
        FROM a
        JOIN tariff_prices tp
          ON tp.tariff_id = a.tariff_id AND tp.version = a.version AND tp.voltage_class = a.voltage_class
         AND a.day >= tp.price_from AND (tp.price_to IS NULL OR a.day < tp.price_to)
    )
    SELECT e.park_id, e.firm_id, e.bucket, e.day, e.month, e.slot, e.kwh, e.meters, e.suspect, e.spread_kwh,
           a.tariff_id, a.version, a.voltage_class, sm.period,
           pr.price, pr.price * e.kwh, pr.basis, (a.verified AND pr.verified)
    FROM pp_firm_elec_15m(p_firms, p_from, p_to) e
    LEFT JOIN a ON a.firm_id = e.firm_id AND a.day = e.day
    LEFT JOIN sm ON sm.tariff_id = a.tariff_id AND sm.version = a.version AND sm.month = e.month AND sm.slot = e.slot
    LEFT JOIN pr
           ON pr.assignment_id = a.assignment_id AND pr.version = a.version AND pr.day = a.day
          AND pr.period = sm.period
$$;

-- v_firm_elec_tou_daily for the days p_from .. p_to of p_firms (pp_firm_elec_tou_15m by day).
CREATE OR REPLACE FUNCTION pp_firm_elec_tou_daily(p_firms text[], p_from date, p_to date)
RETURNS SETOF v_firm_elec_tou_daily
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT t.park_id, t.firm_id, t.day, t.period, t.tariff_id, t.tariff_version, t.voltage_class, t.price,
           t.price_basis, t.verified,
           sum(t.kwh) AS kwh, sum(t.cost_yuan) AS cost_yuan, count(*)::int AS slots,
           bool_or(t.suspect) AS suspect, sum(t.spread_kwh) AS spread_kwh
    FROM pp_firm_elec_tou_15m(p_firms, p_from, p_to) t
    GROUP BY t.park_id, t.firm_id, t.day, t.period, t.tariff_id, t.tariff_version, t.voltage_class, t.price,
             t.price_basis, t.verified
$$;

-- v_firm_cost_daily for the days p_from .. p_to of p_firms: electricity by period with the register
-- check of v_firm_tou_register_check, and every other carrier of v_firm_carrier_cost_daily.
CREATE OR REPLACE FUNCTION pp_firm_cost_daily(p_firms text[], p_from date, p_to date)
RETURNS SETOF v_firm_cost_daily
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM pp_cost_bounds('pp_firm_cost_daily', p_firms, p_from, p_to);
    RETURN QUERY
    SELECT * FROM pp_cost_daily_of(p_firms, p_from, p_to,
                                   ARRAY(SELECT t FROM pp_firm_elec_tou_daily(p_firms, p_from, p_to) t));
END $$;

-- Internal (not granted): pp_firm_cost_daily's rows from electricity already priced by day and
-- period (p_tou: rows of pp_firm_elec_tou_daily for p_firms, p_from .. p_to), so that
-- pp_firm_cost_monthly reads the 15-minute slots once for both the energy rows and the demand.
CREATE OR REPLACE FUNCTION pp_cost_daily_of(p_firms text[], p_from date, p_to date,
                                            p_tou v_firm_elec_tou_daily[])
RETURNS SETOF v_firm_cost_daily
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    RETURN QUERY
    WITH t AS MATERIALIZED (
        SELECT * FROM unnest(p_tou)
    ), reg AS (
        SELECT dv.firm_id, c.day, substring(m.name FROM '^elec_import_kwh_(.*)$') AS period,
               sum(c.increase) AS register_kwh
        FROM v_counter_daily c
        JOIN metrics m USING (metric_id)
        JOIN v_devices dv USING (device_pk)
        WHERE m.name IN ('elec_import_kwh_sharp', 'elec_import_kwh_peak', 'elec_import_kwh_flat', 'elec_import_kwh_valley')
          AND (dv.meter_level = 1 OR dv.meter_level IS NULL)
          AND (p_firms IS NULL OR dv.firm_id = ANY (p_firms)) AND c.day BETWEEN p_from AND p_to
        GROUP BY dv.firm_id, c.day, m.name
    ), comp AS (
        SELECT t.firm_id, t.day, t.period, sum(t.kwh) AS computed_kwh
        FROM t
        WHERE t.period IS NOT NULL
        GROUP BY t.firm_id, t.day, t.period
    ), tol AS (
        SELECT coalesce((SELECT value FROM cost_params WHERE key = 'register_tolerance_pct'), 2.0) AS pct,
               coalesce((SELECT value FROM cost_params WHERE key = 'register_tolerance_kwh'), 1.0) AS kwh
    ), rc AS (
        -- the rows of v_firm_tou_register_check that v_firm_cost_daily joins: days the registers report
        SELECT r.firm_id, r.day, r.period, coalesce(r.register_kwh, 0) AS register_kwh,
               abs(coalesce(c.computed_kwh, 0) - coalesce(r.register_kwh, 0))
                   > greatest(tol.kwh, tol.pct / 100.0 * coalesce(r.register_kwh, 0)) AS mismatch
        FROM reg r
        CROSS JOIN tol
        LEFT JOIN comp c USING (firm_id, day, period)
        UNION ALL
        -- periods computed on a day the registers report, without a register of that period
        SELECT c.firm_id, c.day, c.period, 0,
               abs(c.computed_kwh) > greatest(tol.kwh, 0.0)
        FROM comp c
        CROSS JOIN tol
        WHERE EXISTS (SELECT FROM reg r WHERE r.firm_id = c.firm_id AND r.day = c.day)
          AND NOT EXISTS (SELECT FROM reg r WHERE r.firm_id = c.firm_id AND r.day = c.day AND r.period = c.period)
          AND c.period IN ('sharp', 'peak', 'flat', 'valley')
    )
    SELECT t.park_id, t.firm_id, t.day, 'electricity'::text, coalesce(t.period, 'unpriced'),
           t.kwh, 'kWh'::text, t.price, 'yuan/kWh'::text, t.cost_yuan,
           t.tariff_id, t.tariff_version, t.voltage_class, t.price_basis, t.verified, t.suspect,
           rc.mismatch, rc.register_kwh
    FROM t
    LEFT JOIN rc ON rc.firm_id = t.firm_id AND rc.day = t.day AND rc.period = t.period
    UNION ALL
    SELECT c.park_id, c.firm_id, c.day, c.carrier, 'all', c.quantity, c.unit, c.price, c.price_unit, c.cost_yuan,
           c.tariff_id, c.tariff_version, NULL, c.price_basis, c.verified, c.suspect, NULL, NULL
    FROM v_firm_carrier_cost_daily c
    WHERE (p_firms IS NULL OR c.firm_id = ANY (p_firms)) AND c.day BETWEEN p_from AND p_to
;
END $$;

-- pp_cost_daily_of prices whatever rows it is given: only the functions above call it (as owner).
REVOKE EXECUTE ON FUNCTION pp_cost_daily_of(text[], date, date, v_firm_elec_tou_daily[]) FROM PUBLIC;

-- v_firm_cost_monthly for the months that overlap p_from .. p_to (month from
-- date_trunc('month', p_from) to p_to), each over the whole month: the energy rows of
-- pp_firm_cost_daily and the two-part charge of v_firm_capacity_charge_monthly (the month's
-- maximum demand from pp_firm_elec_15m and the meters' max_demand_kw of those months).
CREATE OR REPLACE FUNCTION pp_firm_cost_monthly(p_firms text[], p_from date, p_to date)
RETURNS SETOF v_firm_cost_monthly
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_from date;
    v_to date;
    v_lo timestamptz;
    v_hi timestamptz;
BEGIN
    PERFORM pp_cost_bounds('pp_firm_cost_monthly', p_firms, p_from, p_to);
    v_from := date_trunc('month', p_from)::date;
    v_to := (date_trunc('month', p_to) + interval '1 month - 1 day')::date;
    SELECT lo, hi INTO v_lo, v_hi FROM pp_cost_bounds('pp_firm_cost_monthly', p_firms, v_from, v_to);
    RETURN QUERY
    WITH e AS MATERIALIZED (
        SELECT * FROM pp_firm_elec_tou_15m(p_firms, v_from, v_to)
    ), tou AS (
        -- as pp_firm_elec_tou_daily
        SELECT e.park_id, e.firm_id, e.day, e.period, e.tariff_id, e.tariff_version, e.voltage_class, e.price,
               e.price_basis, e.verified,
               sum(e.kwh) AS kwh, sum(e.cost_yuan) AS cost_yuan, count(*)::int AS slots,
               bool_or(e.suspect) AS suspect, sum(e.spread_kwh) AS spread_kwh
        FROM e
        GROUP BY e.park_id, e.firm_id, e.day, e.period, e.tariff_id, e.tariff_version, e.voltage_class, e.price,
                 e.price_basis, e.verified
    ), c AS (
        SELECT e.park_id, e.firm_id, date_trunc('month', e.day)::date AS month,
               4 * max(e.kwh) AS computed_kw,
               (array_agg(e.bucket ORDER BY e.kwh DESC, e.bucket))[1] AS computed_at,
               max(e.day) AS last_day
        FROM e
        GROUP BY e.park_id, e.firm_id, date_trunc('month', e.day)
    ), r AS (
        SELECT x.park_id, x.firm_id, x.month, sum(x.kw) AS reported_kw, count(*)::int AS reported_meters
        FROM (
            SELECT r.park_id, r.firm_id, r.device_pk,
                   date_trunc('month', r.bucket AT TIME ZONE p.timezone)::date AS month, max(r.max) AS kw
            FROM v_readings_15m r
            JOIN v_devices d USING (device_pk)
            JOIN v_parks p ON p.park_id = r.park_id
            WHERE r.metric = 'max_demand_kw' AND r.max IS NOT NULL
              AND (d.meter_level = 1 OR d.meter_level IS NULL)
              AND (p_firms IS NULL OR d.firm_id = ANY (p_firms))
              AND r.bucket >= v_lo AND r.bucket < v_hi
            GROUP BY r.park_id, r.firm_id, r.device_pk, date_trunc('month', r.bucket AT TIME ZONE p.timezone)
        ) x
        WHERE x.month BETWEEN v_from AND v_to
        GROUP BY x.park_id, x.firm_id, x.month
    ), dm AS (
        SELECT c.park_id, c.firm_id, c.month, c.computed_at, r.reported_meters,
               coalesce(r.reported_kw, c.computed_kw) AS demand_kw,
               CASE WHEN r.reported_kw IS NOT NULL THEN 'reported' ELSE 'computed' END AS demand_basis,
               c.last_day
        FROM c
        LEFT JOIN r USING (park_id, firm_id, month)
    ), cap AS (
        -- as v_firm_capacity_charge_monthly
        SELECT dm.park_id, dm.firm_id, dm.month, ft.capacity_basis, ft.tariff_id, tv.version AS tariff_version,
               ft.voltage_class,
               CASE ft.capacity_basis WHEN 'demand' THEN dm.demand_kw ELSE ft.transformer_kva END AS quantity,
               CASE ft.capacity_basis WHEN 'demand' THEN 'kW' ELSE 'kVA' END AS unit,
               CASE ft.capacity_basis WHEN 'demand' THEN tp.demand_yuan_per_kw_month
                    ELSE tp.capacity_yuan_per_kva_month END AS price,
               CASE ft.capacity_basis WHEN 'demand' THEN 'yuan/kW·month' ELSE 'yuan/kVA·month' END AS price_unit,
               CASE ft.capacity_basis WHEN 'demand' THEN dm.demand_kw * tp.demand_yuan_per_kw_month
                    ELSE ft.transformer_kva * tp.capacity_yuan_per_kva_month END AS cost_yuan,
               CASE ft.capacity_basis
                    WHEN 'demand' THEN 'maximum demand ' || dm.demand_basis
                         || CASE WHEN dm.demand_basis = 'computed'
                                 THEN ': 4 × the largest 15-minute kWh, at ' || to_char(dm.computed_at, 'YYYY-MM-DD"T"HH24:MI:SSOF')
                                 ELSE ': max_demand_kw of ' || dm.reported_meters || ' boundary meter(s)' END
                    ELSE 'transformer capacity of the assignment' END AS price_basis,
               (tv.verified AND tp.verified) AS verified
        FROM dm
        JOIN firm_tariffs ft
          ON ft.firm_id = dm.firm_id AND ft.carrier = 'electricity' AND ft.capacity_basis <> 'none'
         AND dm.last_day >= ft.valid_from AND (ft.valid_to IS NULL OR dm.last_day < ft.valid_to)
        JOIN tariff_versions tv
          ON tv.tariff_id = ft.tariff_id
         AND dm.last_day >= tv.valid_from AND (tv.valid_to IS NULL OR dm.last_day < tv.valid_to)
        LEFT JOIN tariff_two_part tp
          ON tp.tariff_id = tv.tariff_id AND tp.version = tv.version AND tp.voltage_class = ft.voltage_class
    )
    SELECT d.park_id, d.firm_id, date_trunc('month', d.day)::date, d.carrier, d.period,
           sum(d.quantity), d.unit, d.price, d.price_unit, sum(d.cost_yuan),
           d.tariff_id, d.tariff_version, d.voltage_class, d.price_basis, d.verified,
           bool_or(d.suspect), bool_or(d.register_mismatch), count(DISTINCT d.day)::int
    FROM pp_cost_daily_of(p_firms, v_from, v_to, ARRAY(SELECT tou::v_firm_elec_tou_daily FROM tou)) d
    GROUP BY d.park_id, d.firm_id, date_trunc('month', d.day), d.carrier, d.period, d.unit, d.price, d.price_unit,
             d.tariff_id, d.tariff_version, d.voltage_class, d.price_basis, d.verified
    UNION ALL
    SELECT cap.park_id, cap.firm_id, cap.month, 'electricity', cap.capacity_basis, cap.quantity, cap.unit,
           cap.price, cap.price_unit, cap.cost_yuan, cap.tariff_id, cap.tariff_version, cap.voltage_class,
           cap.price_basis, cap.verified, false, NULL, NULL
    FROM cap;
END $$;
