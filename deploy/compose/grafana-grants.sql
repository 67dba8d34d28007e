-- The read-only PostgreSQL role Grafana logs in with: SELECT on the contract views listed below and
-- EXECUTE on the cost functions listed below
-- (docs/architecture.md: the store views, alerts, results and costs contracts), nothing else — a new view is not exposed until listed. Views run with their owner's rights, so the role needs no access to the tables beneath.
-- Re-run after every `parkpulse db migrate` that adds views (compose does: db-grants service).
--   psql -v ON_ERROR_STOP=1 -v role=grafana_ro -v pw=SECRET -f grafana-grants.sql
SELECT set_config('pp.grafana_role', :'role', false), set_config('pp.grafana_pw', :'pw', false);

DO $$
DECLARE
    r text := current_setting('pp.grafana_role');
    v text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
        EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', r, current_setting('pp.grafana_pw'));
    ELSE
        EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L', r, current_setting('pp.grafana_pw'));
    END IF;
    EXECUTE format('ALTER ROLE %I SET default_transaction_read_only = on', r);
    EXECUTE format('ALTER ROLE %I SET statement_timeout = %L', r, '60s');
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), r);
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', r);
    FOREACH v IN ARRAY ARRAY[
        'v_devices', 'v_readings', 'v_readings_15m', 'v_readings_1h', 'v_readings_1d', 'v_counter_daily',
        'v_energy_daily', 'v_firm_energy_daily', 'v_device_last_seen', 'v_gateway_status', 'v_data_gaps',
        'v_alerts', 'v_alerts_open', 'v_firm_kpi_year', 'v_park_scorecard', 'v_compliance', 'v_emission_limits',
        'v_emission_hours', 'v_parks', 'v_firms',
        -- costs contract (costs/): the views the energy-cost dashboard reads
        'v_firm_cost_daily', 'v_firm_cost_monthly', 'v_firm_tou_register_check', 'v_firm_capacity_charge_monthly'
    ] LOOP
        IF to_regclass(format('public.%I', v)) IS NOT NULL THEN
            EXECUTE format('GRANT SELECT ON public.%I TO %I', v, r);
        END IF;
    END LOOP;
    -- costs contract: the bounded cost functions the energy-cost dashboard calls (SECURITY DEFINER:
    -- like a view they run with their owner's rights, so EXECUTE is all the role needs). Only the
    -- listed roles may run them: PUBLIC's default EXECUTE is revoked.
    FOREACH v IN ARRAY ARRAY[
        'pp_firm_cost_daily(text[],date,date)', 'pp_firm_cost_monthly(text[],date,date)'
    ] LOOP
        IF to_regprocedure(format('public.%s', v)) IS NOT NULL THEN
            EXECUTE format('REVOKE EXECUTE ON FUNCTION public.%s FROM PUBLIC', v);
            EXECUTE format('GRANT EXECUTE ON FUNCTION public.%s TO %I', v, r);
        END IF;
    END LOOP;
    -- the inner steps of those functions: their owner runs them; nobody else needs to
    FOREACH v IN ARRAY ARRAY[
        'pp_cost_bounds(text,text[],date,date)', 'pp_firm_elec_15m(text[],date,date)',
        'pp_firm_elec_tou_15m(text[],date,date)', 'pp_firm_elec_tou_daily(text[],date,date)'
    ] LOOP
        IF to_regprocedure(format('public.%s', v)) IS NOT NULL THEN
            EXECUTE format('REVOKE EXECUTE ON FUNCTION public.%s FROM PUBLIC', v);
        END IF;
    END LOOP;
END $$;

SELECT set_config('pp.grafana_pw', '', false);
