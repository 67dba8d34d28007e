-- Rules (rules/): the results contract — Grafana and the console read only these (tables in 0200).
-- Idempotent: re-applied by every `parkpulse db migrate` (README.md in this folder).

CREATE OR REPLACE VIEW v_firm_kpi_year AS
SELECT park_id, firm_id, year, rule_set, rule_version, energy_tce, energy_tce_equal_value, carbon_tco2,
       added_value_10k_cny, intensity_tce_per_10k_cny, intensity_change_pct, mu_tax_10k_cny,
       mu_added_value_10k_cny, score, class, explanation, evaluated_at
FROM firm_kpi_results;

CREATE OR REPLACE VIEW v_park_scorecard AS
SELECT park_id, year, indicator, value, target, unit, met, source
FROM park_scorecard_results;

CREATE OR REPLACE VIEW v_compliance AS
SELECT park_id, firm_id, workshop_id, year, month, scheme, verdict, score, detail, evaluated_at
FROM compliance_results;
