-- Alerts (rules/alerts/, the alerts contract in docs/architecture.md): the audit-trail triggers'
-- functions, pp_alert_act() for people (console), pp_alert_fire()/pp_alert_clear() for the engine,
-- v_alerts / v_alerts_open, v_emission_limits and v_emission_hours (tables and triggers in 0300-0304).
-- Idempotent: re-applied by every `parkpulse db migrate` (README.md in this folder).

-- The audit trail is append-only.
CREATE OR REPLACE FUNCTION pp_alert_events_refuse() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'alert_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'add a new event (comment) instead of changing the audit trail';
END $$;

-- updated_at moves when the alert changes; engine bookkeeping (clear_since, the hysteresis clear
-- timer kept across restarts) does not count as a change.
CREATE OR REPLACE FUNCTION pp_alerts_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    o alerts := OLD;
BEGIN
    o.clear_since := NEW.clear_since;
    o.updated_at := NEW.updated_at;
    IF o IS NOT DISTINCT FROM NEW THEN
        RETURN NEW;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

-- JSON snapshot of an alert as sent to webhooks and MQTT.
CREATE OR REPLACE FUNCTION pp_alert_json(a alerts) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'alert_id', a.alert_id, 'rule_id', a.rule_id, 'rule_version', a.rule_version, 'kind', a.kind,
        'severity', a.severity, 'park_id', a.park_id, 'firm_id', a.firm_id, 'gateway_id', a.gateway_id,
        'device_id', a.device_id, 'metric', a.metric, 'subject', a.subject, 'state', a.state,
        'opened_at', a.opened_at, 'acked_at', a.acked_at, 'acked_by', a.acked_by,
        'resolved_at', a.resolved_at, 'resolved_by', a.resolved_by, 'value', a.value,
        'limit_value', a.limit_value, 'unit', a.unit, 'message_zh', a.message_zh,
        'message_en', a.message_en, 'observed_at', a.observed_at, 'updated_at', a.updated_at)
$$;

-- After every audit row: notify listeners and queue webhooks (same transaction = never lost).
CREATE OR REPLACE FUNCTION pp_alert_events_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    a alerts;
    sev_rank int;
BEGIN
    SELECT * INTO a FROM alerts WHERE alert_id = NEW.alert_id;
    PERFORM pg_notify('pp_alerts', json_build_object(
        'alert_id', NEW.alert_id, 'action', NEW.action, 'park_id', a.park_id,
        'event_id', NEW.event_id, 'state', a.state)::text);
    sev_rank := array_position(ARRAY['info', 'warning', 'critical'], a.severity);
    INSERT INTO webhook_outbox (subscription_id, event_id, idempotency_key, payload)
    SELECT s.subscription_id, NEW.event_id,
           format('ppa-%s-%s', NEW.event_id, s.subscription_id),
           jsonb_build_object(
               'v', 1,
               'event', jsonb_build_object('event_id', NEW.event_id, 'alert_id', NEW.alert_id, 'at', NEW.at,
                                           'actor', NEW.actor, 'action', NEW.action, 'comment', NEW.comment,
                                           'detail', NEW.detail),
               'alert', pp_alert_json(a))
    FROM webhook_subscriptions s
    WHERE s.enabled
      AND (s.park_id IS NULL OR s.park_id = a.park_id)
      AND (s.kinds IS NULL OR a.kind = ANY (s.kinds))
      AND (s.actions IS NULL OR NEW.action = ANY (s.actions))
      AND sev_rank >= array_position(ARRAY['info', 'warning', 'critical'], s.min_severity);
    IF FOUND THEN
        PERFORM pg_notify('pp_webhooks', NEW.event_id::text);
    END IF;
    RETURN NULL;
END $$;

-- People act on alerts: acknowledge | resolve | comment | reopen (with the state rules).
--   acknowledge: only a firing alert; resolve: a firing or acknowledged alert (resolved_by = actor,
--   or NULL when actor = 'system'); comment: any state, text required; reopen: a resolved alert,
--   only if no other alert for the same rule and subject is open.
-- Returns the alert's state afterwards. Errors: no_data_found (unknown alert),
-- invalid_parameter_value (bad action/actor/comment), check_violation (state rule).
CREATE OR REPLACE FUNCTION pp_alert_act(p_alert_id bigint, p_actor text, p_action text, p_comment text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    a alerts;
    act text := lower(btrim(coalesce(p_action, '')));
    who text := btrim(coalesce(p_actor, ''));
    note text := nullif(btrim(coalesce(p_comment, '')), '');
BEGIN
    IF who = '' THEN
        RAISE EXCEPTION 'actor: a user name is required, got %', quote_nullable(p_actor)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    act := CASE act WHEN 'ack' THEN 'acknowledge' WHEN 'acknowledged' THEN 'acknowledge'
                    WHEN 'resolved' THEN 'resolve' WHEN 'reopened' THEN 'reopen' ELSE act END;
    IF act NOT IN ('acknowledge', 'resolve', 'comment', 'reopen') THEN
        RAISE EXCEPTION 'action: expected acknowledge, resolve, comment or reopen, got %', quote_nullable(p_action)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO a FROM alerts WHERE alert_id = p_alert_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alert_id: no alert %', p_alert_id USING ERRCODE = 'no_data_found';
    END IF;
    IF act = 'acknowledge' THEN
        IF a.state <> 'firing' THEN
            RAISE EXCEPTION 'alert %: cannot acknowledge an alert that is %', p_alert_id, a.state
                USING ERRCODE = 'check_violation';
        END IF;
        UPDATE alerts SET state = 'acknowledged', acked_at = now(), acked_by = who WHERE alert_id = p_alert_id;
        INSERT INTO alert_events (alert_id, actor, action, comment) VALUES (p_alert_id, who, 'acknowledged', note);
    ELSIF act = 'resolve' THEN
        IF a.state = 'resolved' THEN
            RAISE EXCEPTION 'alert %: cannot resolve an alert that is already resolved', p_alert_id
                USING ERRCODE = 'check_violation';
        END IF;
        UPDATE alerts SET state = 'resolved', resolved_at = now(),
                          resolved_by = CASE WHEN who = 'system' THEN NULL ELSE who END
        WHERE alert_id = p_alert_id;
        INSERT INTO alert_events (alert_id, actor, action, comment, detail)
        VALUES (p_alert_id, who, 'resolved', note, jsonb_build_object('manual', who <> 'system'));
    ELSIF act = 'comment' THEN
        IF note IS NULL THEN
            RAISE EXCEPTION 'comment: text is required for a comment' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        UPDATE alerts SET updated_at = now() WHERE alert_id = p_alert_id;
        INSERT INTO alert_events (alert_id, actor, action, comment) VALUES (p_alert_id, who, 'comment', note);
    ELSE
        IF a.state <> 'resolved' THEN
            RAISE EXCEPTION 'alert %: cannot reopen an alert that is %', p_alert_id, a.state
                USING ERRCODE = 'check_violation';
        END IF;
        IF EXISTS (SELECT 1 FROM alerts WHERE rule_id = a.rule_id AND subject = a.subject AND state <> 'resolved') THEN
            RAISE EXCEPTION 'alert %: another alert for % / % is open', p_alert_id, a.rule_id, a.subject
                USING ERRCODE = 'check_violation';
        END IF;
        UPDATE alerts SET state = 'firing', resolved_at = NULL, resolved_by = NULL, acked_at = NULL,
                          acked_by = NULL, clear_since = NULL
        WHERE alert_id = p_alert_id;
        INSERT INTO alert_events (alert_id, actor, action, comment) VALUES (p_alert_id, who, 'reopened', note);
    END IF;
    RETURN (SELECT state FROM alerts WHERE alert_id = p_alert_id);
END $$;

-- The engine raises an alert: returns the open alert for (rule_id, subject), creating it (and a
-- 'fired' audit row) when none is open. An open alert gets its value/evidence refreshed; a change
-- of severity is recorded as 'updated', and so is a change of rule version or, for emission alerts,
-- of limit (other kinds' bounds, e.g. a tamper step, vary reading by reading).
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

-- The engine resolves automatically (the condition has cleared past its hysteresis):
-- resolved_by stays NULL. Returns false when the alert was no longer open.
CREATE OR REPLACE FUNCTION pp_alert_clear(p_alert_id bigint, p_detail jsonb DEFAULT NULL, p_value double precision DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE alerts SET state = 'resolved', resolved_at = now(), resolved_by = NULL,
                      value = coalesce(p_value, value)
    WHERE alert_id = p_alert_id AND state <> 'resolved';
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO alert_events (alert_id, actor, action, detail)
    VALUES (p_alert_id, 'system', 'resolved', coalesce(p_detail, '{}'::jsonb) || jsonb_build_object('manual', false));
    RETURN true;
END $$;

CREATE OR REPLACE VIEW v_alerts AS
SELECT a.alert_id, a.rule_id, a.rule_version, a.kind, a.severity, a.park_id, a.firm_id, a.gateway_id,
       a.device_id, a.metric, a.subject, a.state, a.opened_at, a.acked_at, a.acked_by, a.resolved_at,
       a.resolved_by, a.value, a.limit_value, a.unit, a.message_zh, a.message_en, a.evidence, a.updated_at,
       p.name AS park_name, p.name_en AS park_name_en, f.name AS firm_name, f.name_en AS firm_name_en,
       a.observed_at, m.pollutant,
       (a.state <> 'resolved') AS is_open
FROM alerts a
LEFT JOIN parks p ON p.park_id = a.park_id
LEFT JOIN firms f ON f.firm_id = a.firm_id
LEFT JOIN metrics m ON m.name = a.metric;

CREATE OR REPLACE VIEW v_alerts_open AS
SELECT * FROM v_alerts WHERE state <> 'resolved';

-- Emission limits and reference oxygen as the alert engine runs them (table emission_limits,
-- written by the engine at start and by `parkpulse alerts limits sync`).
CREATE OR REPLACE VIEW v_emission_limits AS
SELECT entry, limit_id, source_type, metric, pollutant, limit_mg_m3, reference_o2_pct, parks, rule_ids,
       cardinality(rule_ids) > 0 AS active, min_valid_minutes, source, standard, clause, edition, verified,
       note, reference_o2_source, limits_version, rule_set_version, limits_file, synced_at,
       limit_table, applies_when, cities
FROM emission_limits;

COMMENT ON VIEW v_emission_limits IS
    'Emission limits (mg/m3 at reference O2) and reference oxygen per source type, with sources, as the alert engine runs them';

-- The limit each stack-hour was judged against (limit_basis NULL: judged before migration 0304).
CREATE OR REPLACE VIEW v_emission_hours AS
SELECT d.park_id, d.firm_id, d.gateway_id, d.device_id, h.device_pk, h.metric, h.hour,
       h.valid, h.valid_minutes, h.excluded, h.avg_measured, h.avg_o2, h.avg_converted, h.o2_ref,
       h.limit_value, h.limit_id, h.limit_basis, h.exceeded, h.rule_id, h.rule_version, h.evaluated_at
FROM alert_emission_hours h
JOIN v_devices d USING (device_pk);

-- The highest alert_events id a reader of the stream can move its cursor to, after `p_after` and
-- at most `p_limit` events on: every event up to it is "settled", written by a transaction older
-- than every transaction still writing in this database. Identity values are drawn before their
-- row commits, so a later event can commit before an earlier one; a cursor that jumped over the
-- earlier id would never see it. Used by the MQTT publisher (alerts/) and the notify intake.
-- Limits: an id drawn by a transaction that has no xid yet is not covered, and pg_stat_activity
-- shows other roles' sessions only to a role with pg_read_all_stats.
CREATE OR REPLACE FUNCTION pp_alert_events_settled_upto(p_after bigint, p_limit integer)
RETURNS bigint
LANGUAGE sql STABLE AS $$
    WITH oldest AS (
        SELECT coalesce(max(age(a.backend_xid)), -1) AS age
        FROM pg_stat_activity a
        WHERE a.datname = current_database() AND a.backend_xid IS NOT NULL AND a.pid <> pg_backend_pid()
    ), next AS (
        SELECT e.event_id, age(e.xmin) > o.age AS settled
        FROM alert_events e, oldest o
        WHERE e.event_id > p_after
        ORDER BY e.event_id
        LIMIT p_limit
    )
    SELECT coalesce(max(n.event_id), p_after)
    FROM next n
    WHERE n.event_id < coalesce((SELECT min(u.event_id) FROM next u WHERE NOT u.settled), 9223372036854775807)
$$;
