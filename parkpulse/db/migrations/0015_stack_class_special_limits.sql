-- Issue 11: what picks a CEMS stack's emission limits (GB 13271-2014 Tables 1–3).
--   devices.fuel       coal | oil | gas (the standard's column)
--   devices.age_class  existing (在用 → Table 1) | new (新建 → Table 2)
--   parks.special_limits_apply / _basis / _since: special limits (Table 3) apply to the park's
--     stacks, on what basis, from when. NULL apply = the park file does not state it (the alert
--     engine then decides from the park's city and the limits file's special-limit areas).
-- The registry import requires fuel and age class for every CEMS stack. Rows stored before this
-- migration get the fuel their source type names (gas_boiler → gas, …); their age class stays NULL
-- until the park file is imported again, and the alert engine judges such a stack on the
-- existing-boiler table (the most lenient) and says so in the evidence. Nothing stored is
-- re-evaluated: alert_emission_hours rows and open alerts keep the limits they were judged with.
ALTER TABLE devices
    ADD COLUMN fuel text CHECK (fuel IN ('coal', 'oil', 'gas')),
    ADD COLUMN age_class text CHECK (age_class IN ('existing', 'new'));

UPDATE devices SET fuel = substring(source_type FROM '^(coal|oil|gas)_boiler$')
WHERE kind = 'cems' AND fuel IS NULL AND source_type ~ '^(coal|oil|gas)_boiler$';

ALTER TABLE parks
    ADD COLUMN special_limits_apply boolean,
    ADD COLUMN special_limits_basis text,
    ADD COLUMN special_limits_since date,
    ADD CONSTRAINT parks_special_limits_basis
        CHECK (special_limits_apply IS NULL OR length(btrim(special_limits_basis)) >= 3);

COMMENT ON COLUMN devices.fuel IS 'CEMS stack fuel: coal, oil or gas (GB 13271 column)';
COMMENT ON COLUMN devices.age_class IS 'CEMS stack age class: existing (GB 13271 Table 1) or new (Table 2)';
COMMENT ON COLUMN parks.special_limits_apply IS 'special emission limits (GB 13271 Table 3) apply; NULL = not stated';

-- v_devices and v_parks show the new columns (appended): parkpulse/db/views/10_kernel.sql.
