-- Rules engine (rules/): firms' yearly economic data, evaluation runs and results, and the
-- result views v_firm_kpi_year, v_park_scorecard, v_compliance (the results contract, docs/architecture.md).
-- Every result row carries the rule set (name + version) that produced it, the inputs it used
-- and an explanation of every number, so a class or verdict can be reproduced.

-- One row per firm and year, imported by `parkpulse firms import` (telemetry cannot measure tax).
-- Money in 万元 (10k CNY), pollutant discharge in tonnes, output in the firm's product units.
CREATE TABLE firm_economics (
    firm_id              text    NOT NULL REFERENCES firms ON DELETE CASCADE,
    year                 integer NOT NULL CHECK (year BETWEEN 1990 AND 2200),
    added_value_10k_cny  numeric CHECK (added_value_10k_cny IS NULL OR added_value_10k_cny >= 0),
    tax_10k_cny          numeric CHECK (tax_10k_cny IS NULL OR tax_10k_cny >= 0),
    revenue_10k_cny      numeric CHECK (revenue_10k_cny IS NULL OR revenue_10k_cny >= 0),
    rd_spend_10k_cny     numeric CHECK (rd_spend_10k_cny IS NULL OR rd_spend_10k_cny >= 0),
    employees            integer CHECK (employees IS NULL OR employees >= 0),
    pollutant_t          numeric CHECK (pollutant_t IS NULL OR pollutant_t >= 0),
    output_units         numeric CHECK (output_units IS NULL OR output_units >= 0),
    output_value_10k_cny numeric CHECK (output_value_10k_cny IS NULL OR output_value_10k_cny >= 0),
    green_declared       jsonb   NOT NULL DEFAULT '{}'::jsonb,  -- declared GB/T 36132 items
    imported_at          timestamptz NOT NULL DEFAULT now(),
    source_file          text,
    PRIMARY KEY (firm_id, year)
);

-- One row per evaluation (`parkpulse rules run`, `rules serve`).
CREATE TABLE rule_runs (
    run_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_set     text        NOT NULL,
    rule_version text        NOT NULL,
    year         integer     NOT NULL,
    month        smallint CHECK (month IS NULL OR month BETWEEN 1 AND 12),
    park_id      text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    firms        integer,
    summary      jsonb       NOT NULL DEFAULT '{}'::jsonb
);

-- Current yearly KPI result per firm (a new run replaces it; rule_runs keeps the history).
CREATE TABLE firm_kpi_results (
    firm_id                   text    NOT NULL REFERENCES firms ON DELETE CASCADE,
    year                      integer NOT NULL,
    park_id                   text    NOT NULL,
    run_id                    bigint  REFERENCES rule_runs ON DELETE SET NULL,
    rule_set                  text    NOT NULL,
    rule_version              text    NOT NULL,
    energy_tce                double precision,
    energy_tce_equal_value    double precision,
    carbon_tco2               double precision,
    added_value_10k_cny       double precision,
    intensity_tce_per_10k_cny double precision,
    intensity_change_pct      double precision,
    mu_tax_10k_cny            double precision,
    mu_added_value_10k_cny    double precision,
    score                     double precision,
    class                     text    NOT NULL CHECK (class IN ('A', 'B', 'C', 'out_of_scope')),
    explanation               jsonb   NOT NULL DEFAULT '{}'::jsonb,
    inputs                    jsonb   NOT NULL DEFAULT '{}'::jsonb,
    evaluated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (firm_id, year)
);
CREATE INDEX firm_kpi_results_park ON firm_kpi_results (park_id, year);

-- Energy per firm and month (from `rules run --month`), not part of the contract views.
CREATE TABLE firm_energy_month_results (
    firm_id                text    NOT NULL REFERENCES firms ON DELETE CASCADE,
    year                   integer NOT NULL,
    month                  smallint NOT NULL CHECK (month BETWEEN 1 AND 12),
    park_id                text    NOT NULL,
    run_id                 bigint  REFERENCES rule_runs ON DELETE SET NULL,
    rule_set               text    NOT NULL,
    rule_version           text    NOT NULL,
    energy_tce             double precision,
    energy_tce_equal_value double precision,
    carbon_tco2            double precision,
    explanation            jsonb   NOT NULL DEFAULT '{}'::jsonb,
    evaluated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (firm_id, year, month)
);

CREATE TABLE park_scorecard_results (
    park_id      text    NOT NULL REFERENCES parks ON DELETE CASCADE,
    year         integer NOT NULL,
    indicator    text    NOT NULL,
    run_id       bigint  REFERENCES rule_runs ON DELETE SET NULL,
    rule_set     text    NOT NULL,
    rule_version text    NOT NULL,
    value        double precision,
    target       double precision,
    unit         text,
    met          boolean,           -- NULL: not enough data to say
    source       text,
    detail       jsonb   NOT NULL DEFAULT '{}'::jsonb,
    evaluated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (park_id, year, indicator)
);

CREATE TABLE compliance_results (
    park_id      text    NOT NULL,
    firm_id      text    NOT NULL REFERENCES firms ON DELETE CASCADE,
    workshop_id  text,              -- NULL for a firm-level verdict
    year         integer NOT NULL,
    month        smallint CHECK (month IS NULL OR month BETWEEN 1 AND 12),  -- NULL for a yearly verdict
    scheme       text    NOT NULL CHECK (scheme IN ('smart_workshop', 'green_factory')),
    run_id       bigint  REFERENCES rule_runs ON DELETE SET NULL,
    rule_set     text    NOT NULL,
    rule_version text    NOT NULL,
    verdict      text    NOT NULL CHECK (verdict IN ('pass', 'fail', 'insufficient_data')),
    score        double precision,
    detail       jsonb   NOT NULL DEFAULT '{}'::jsonb,
    evaluated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX compliance_results_key
    ON compliance_results (firm_id, coalesce(workshop_id, ''), year, coalesce(month, 0), scheme);
CREATE INDEX compliance_results_park ON compliance_results (park_id, year);

-- Contract 4: the rules result views (Grafana and the console read only these).
CREATE VIEW v_firm_kpi_year AS
SELECT park_id, firm_id, year, rule_set, rule_version, energy_tce, energy_tce_equal_value, carbon_tco2,
       added_value_10k_cny, intensity_tce_per_10k_cny, intensity_change_pct, mu_tax_10k_cny,
       mu_added_value_10k_cny, score, class, explanation, evaluated_at
FROM firm_kpi_results;

CREATE VIEW v_park_scorecard AS
SELECT park_id, year, indicator, value, target, unit, met, source
FROM park_scorecard_results;

CREATE VIEW v_compliance AS
SELECT park_id, firm_id, workshop_id, year, month, scheme, verdict, score, detail, evaluated_at
FROM compliance_results;
