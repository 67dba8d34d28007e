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
-- version, pp_alert_fire now records that change as an 'updated' audit row (limit changes: emission
-- alerts only — other kinds' bounds, e.g. a tamper step, vary reading by reading).
ALTER TABLE emission_limits
    ADD COLUMN limit_table text,
    ADD COLUMN applies_when text,
    ADD COLUMN cities text[];

ALTER TABLE alert_emission_hours
    ADD COLUMN limit_id text,
    ADD COLUMN limit_basis text;

CREATE OR REPLACE VIEW v_emission_limits AS
SELECT entry, limit_id, source_type, metric, pollutant, limit_mg_m3, reference_o2_pct, parks, rule_ids,
       cardinality(rule_ids) > 0 AS active, min_valid_minutes, source, standard, clause, edition, verified,
       note, reference_o2_source, limits_version, rule_set_version, limits_file, synced_at,
       limit_table, applies_when, cities
FROM emission_limits;

CREATE OR REPLACE FUNCTION pp_alert_fire(
    p_rule_id text, p_rule_version integer, p_kind text, p_severity text, p_park_id text,
    p_firm_id text, p_gateway_id text, p_device_id text, p_metric text, p_subject text,
    p_value double precision, p_limit double precision, p_unit text,
    p_message_zh text, p_message_en text, p_evidence jsonb, p_observed_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    a alerts;
    new_id bigint;
    changed jsonb := '{}'::jsonb;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pp_alert:' || p_rule_id || '|' || p_subject));
    SELECT * INTO a FROM alerts WHERE rule_id = p_rule_id AND subject = p_subject AND state <> 'resolved' FOR UPDATE;
    IF FOUND THEN
        UPDATE alerts SET value = p_value, limit_value = p_limit, evidence = coalesce(p_evidence, evidence),
                          observed_at = coalesce(p_observed_at, observed_at), clear_since = NULL,
                          severity = p_severity, rule_version = p_rule_version,
                          message_zh = p_message_zh, message_en = p_message_en
        WHERE alert_id = a.alert_id;
        IF a.severity <> p_severity THEN
            changed := changed || jsonb_build_object('severity', jsonb_build_object('from', a.severity, 'to', p_severity));
        END IF;
        IF p_kind = 'emission' AND a.limit_value IS DISTINCT FROM p_limit THEN  -- a tamper step bound varies by reading
            changed := changed || jsonb_build_object('limit', jsonb_build_object(
                'from', a.limit_value, 'to', p_limit,
                'from_basis', a.evidence ->> 'limit_basis_en', 'to_basis', p_evidence ->> 'limit_basis_en'));
        END IF;
        IF a.rule_version <> p_rule_version THEN
            changed := changed || jsonb_build_object('rule_version', jsonb_build_object('from', a.rule_version, 'to', p_rule_version));
        END IF;
        IF changed <> '{}'::jsonb THEN
            INSERT INTO alert_events (alert_id, actor, action, detail)
            VALUES (a.alert_id, 'system', 'updated', changed || jsonb_build_object('value', p_value));
        END IF;
        RETURN a.alert_id;
    END IF;
    INSERT INTO alerts (rule_id, rule_version, kind, severity, park_id, firm_id, gateway_id, device_id, metric,
                        subject, value, limit_value, unit, message_zh, message_en, evidence, observed_at)
    VALUES (p_rule_id, p_rule_version, p_kind, p_severity, p_park_id, p_firm_id, p_gateway_id, p_device_id,
            p_metric, p_subject, p_value, p_limit, p_unit, p_message_zh, p_message_en,
            coalesce(p_evidence, '{}'::jsonb), p_observed_at)
    RETURNING alert_id INTO new_id;
    INSERT INTO alert_events (alert_id, actor, action, detail)
    VALUES (new_id, 'system', 'fired', jsonb_build_object('value', p_value, 'limit', p_limit, 'evidence', p_evidence));
    RETURN new_id;
END $$;
