-- Issue 11: GB 13271-2014 Tables 1–3 per stack. Which limit was used, and why, is kept with every
-- evaluated hour and shown for every figure of the limits file:
--   emission_limits.limit_table   'Table 1' / 'Table 2' / 'Table 3' (NULL for overrides and reference O2)
--   emission_limits.applies_when  when the figure applies (age class, special limits and their areas, override scope)
--   emission_limits.cities        an override's city scope (NULL = not limited by city)
--   alert_emission_hours.limit_id / limit_basis  the limit an hour was judged against, e.g.
--                                 'Table 3 (2+26 city), 150 mg/m³'
-- Nothing is re-evaluated by this migration: hours already stored keep their limit (limit_basis
-- NULL = judged before this migration, by the single limit set then shipped) and open alerts keep
-- their audit trail. When the engine refreshes an open alert against a different limit or rule
-- version, pp_alert_fire (parkpulse/db/views/40_alerts.sql) records that change as an 'updated' audit row (limit changes: emission
-- alerts only — other kinds' bounds, e.g. a tamper step, vary reading by reading).
ALTER TABLE emission_limits
    ADD COLUMN limit_table text,
    ADD COLUMN applies_when text,
    ADD COLUMN cities text[];

ALTER TABLE alert_emission_hours
    ADD COLUMN limit_id text,
    ADD COLUMN limit_basis text;
