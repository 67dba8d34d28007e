-- Managed gateways (fleet/): the fleet at a glance (tables in migrations 0700 and 0102).
-- Idempotent: re-applied by every `parkpulse db migrate` (README.md in this folder).

-- One row per registered gateway: online or offline since when, software version, spool depth,
-- devices in service that report (ok) or stay silent beyond three poll intervals (failing), the
-- last error (a refused or rolled-back push, else the newest dead letter of the last day), and
-- its configuration: mode, the platform's desired version against what the gateway says it runs.
-- drift: a managed gateway whose applied version or SHA-256 differs from the desired one.
CREATE OR REPLACE VIEW v_gateway_fleet AS
WITH desired AS (
    SELECT DISTINCT ON (gateway_id) gateway_id, version, sha256, created_at, created_by
    FROM fleet_configs
    ORDER BY gateway_id, version DESC
), devices AS (
    SELECT gateway_id,
           count(*) FILTER (WHERE last_ts IS NOT NULL
                             AND silent_s <= greatest(3 * coalesce(poll_interval_s, 60), 60))::int AS ok,
           count(*) FILTER (WHERE last_ts IS NULL
                             OR silent_s > greatest(3 * coalesce(poll_interval_s, 60), 60))::int AS failing
    FROM v_device_last_seen
    WHERE enabled
    GROUP BY gateway_id
)
SELECT g.gateway_id, f.park_id, g.firm_id,
       coalesce(s.state, 'offline') AS state, s.since, s.last_seen, s.version, s.spool_depth,
       coalesce(dv.ok, 0) AS devices_ok, coalesce(dv.failing, 0) AS devices_failing,
       coalesce(
           CASE WHEN s.config_state IN ('rejected', 'rolled_back') THEN s.config_reason END,
           (SELECT dl.reason FROM dead_letters dl
             WHERE dl.gateway_id = g.gateway_id AND dl.received_at > now() - interval '1 day'
             ORDER BY dl.received_at DESC LIMIT 1)
       ) AS last_error,
       coalesce(s.config_mode, 'local') AS mode,
       d.version AS desired_version, s.config_applied_version AS applied_version,
       s.config_state, s.config_reason,
       (coalesce(s.config_mode, 'local') = 'managed' AND d.version IS NOT NULL
        AND (s.config_applied_version IS DISTINCT FROM d.version
             OR s.config_applied_sha256 IS DISTINCT FROM d.sha256)) AS drift,
       d.sha256 AS desired_sha256, s.config_applied_sha256 AS applied_sha256,
       s.config_desired_version AS reported_desired_version, s.config_at,
       d.created_at AS desired_at, d.created_by AS desired_by,
       p.version AS published_version, p.published_at
FROM gateways g
JOIN firms f USING (firm_id)
LEFT JOIN gateway_status s USING (gateway_id)
LEFT JOIN desired d USING (gateway_id)
LEFT JOIN devices dv USING (gateway_id)
LEFT JOIN fleet_published p USING (gateway_id);
