-- v_devices shows when a device entered the registry (devices.registered_at, migration 0013), so
-- the smart-workshop rules leave out of a closed past period the devices registered after it
-- ended that did not report in it (they were not installed yet, so they are neither registered
-- nor silent in that period). The column list repeats 0015's and appends registered_at.
-- Re-evaluates nothing: stored compliance and scorecard results of past periods change only when
-- `parkpulse rules run --year Y` evaluates that period again.
CREATE OR REPLACE VIEW v_devices AS
SELECT d.device_pk, d.device_id, d.gateway_id, g.firm_id, f.park_id, f.cluster_id, d.workshop_id,
       d.name, d.kind, d.profile, d.meter_level, d.carrier, d.measures, d.source_type,
       d.poll_interval_s, d.rated_power_kw, d.enabled, d.fuel, d.age_class, d.registered_at
FROM devices d
JOIN gateways g USING (gateway_id)
JOIN firms f USING (firm_id);
