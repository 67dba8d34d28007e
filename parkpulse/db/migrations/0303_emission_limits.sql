-- Emission limits and reference oxygen as the alert engine runs them: a copy of
-- rules/alerts/data/emission_limits.yaml (the one data file for these figures) written by the engine
-- when it starts and by `parkpulse alerts limits sync`. Grafana and others read v_emission_limits.
CREATE TABLE IF NOT EXISTS emission_limits (
    entry               text NOT NULL CHECK (entry IN ('limit_set', 'override', 'reference_o2')),
    limit_id            text NOT NULL,            -- limit set / override id; 'reference-o2' for reference rows
    source_type         text NOT NULL,            -- devices.source_type (gas_boiler, coal_boiler, …)
    metric              text NOT NULL,            -- catalogue pollutant metric; 'o2_pct' for reference rows
    pollutant           text,                     -- catalogue pollutant (nox, so2, particulate)
    limit_mg_m3         double precision CHECK (limit_mg_m3 > 0),
    reference_o2_pct    double precision CHECK (reference_o2_pct >= 0 AND reference_o2_pct < 21),
    parks               text[],                   -- where it applies; NULL = every park
    rule_ids            text[] NOT NULL DEFAULT '{}',  -- enabled emission rules applying it
    min_valid_minutes   integer,                  -- HJ 75/76 valid-hour threshold of those rules
    source              text NOT NULL,
    standard            text,
    clause              text,
    edition             text,
    verified            boolean NOT NULL DEFAULT false,
    note                text,
    reference_o2_source text,
    limits_version      integer NOT NULL,
    rule_set_version    integer NOT NULL,
    limits_file         text NOT NULL,
    synced_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entry, limit_id, source_type, metric),
    CHECK ((entry = 'reference_o2') = (limit_mg_m3 IS NULL)),
    CHECK (entry <> 'reference_o2' OR reference_o2_pct IS NOT NULL)
);

CREATE OR REPLACE VIEW v_emission_limits AS
SELECT entry, limit_id, source_type, metric, pollutant, limit_mg_m3, reference_o2_pct, parks, rule_ids,
       cardinality(rule_ids) > 0 AS active, min_valid_minutes, source, standard, clause, edition, verified,
       note, reference_o2_source, limits_version, rule_set_version, limits_file, synced_at
FROM emission_limits;

COMMENT ON VIEW v_emission_limits IS
    'Emission limits (mg/m3 at reference O2) and reference oxygen per source type, with sources, as the alert engine runs them';
