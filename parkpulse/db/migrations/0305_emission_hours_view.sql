-- The limit each stack-hour was judged against, for readers (Grafana's environment dashboard, the
-- console): since issue 11 the limit is chosen per stack (its fuel and age class, the park's special
-- limits, local overrides), so a per-source-type line from v_emission_limits would be wrong for most
-- stacks. One row per device, pollutant metric, hour and emission rule. limit_basis is NULL for hours
-- judged before migration 0304 (by the single limit set shipped then).
CREATE OR REPLACE VIEW v_emission_hours AS
SELECT d.park_id, d.firm_id, d.gateway_id, d.device_id, h.device_pk, h.metric, h.hour,
       h.valid, h.valid_minutes, h.excluded, h.avg_measured, h.avg_o2, h.avg_converted, h.o2_ref,
       h.limit_value, h.limit_id, h.limit_basis, h.exceeded, h.rule_id, h.rule_version, h.evaluated_at
FROM alert_emission_hours h
JOIN v_devices d USING (device_pk);
