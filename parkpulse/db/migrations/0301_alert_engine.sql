-- Alert engine bookkeeping: rule versions seen, hourly emission values (HJ 75/76 validity),
-- and the cursor of alert events already published on MQTT.

-- Every (rule, version) the engine has run, with its definition: an alert's rule_version can
-- always be explained, and a rule changed without a new version is refused.
CREATE TABLE alert_rule_versions (
    rule_id    text        NOT NULL,
    version    integer     NOT NULL,
    kind       text        NOT NULL,
    definition jsonb       NOT NULL,
    checksum   text        NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule_id, version)
);

-- Hourly converted (折算) averages per CEMS device and pollutant, as evaluated by the emission
-- rule: the evidence behind an exceedance and the data-validity record for the inspector.
CREATE TABLE alert_emission_hours (
    device_pk      integer          NOT NULL,
    metric         text             NOT NULL,
    hour           timestamptz      NOT NULL,
    n_readings     integer          NOT NULL,     -- fingerprint: re-evaluated when it changes
    last_ts        timestamptz,
    valid_minutes  integer          NOT NULL,
    excluded       integer          NOT NULL,
    excluded_by    jsonb            NOT NULL DEFAULT '{}'::jsonb,
    valid          boolean          NOT NULL,     -- valid_minutes >= the rule's minimum (45)
    avg_measured   double precision,
    avg_o2         double precision,
    avg_converted  double precision,
    o2_ref         double precision,
    limit_value    double precision,
    limit_source   text,
    exceeded       boolean,
    rule_id        text             NOT NULL,
    rule_version   integer          NOT NULL,
    evaluated_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (device_pk, metric, hour, rule_id)
);

CREATE TABLE alert_publish_cursor (
    name     text PRIMARY KEY,
    event_id bigint NOT NULL
);
