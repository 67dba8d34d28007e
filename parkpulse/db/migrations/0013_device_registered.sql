-- When a device entered the registry (issue 9). Ingest refuses readings stamped more than
-- PARKPULSE_INGEST_HISTORY_BEFORE_REGISTRATION_DAYS (default 365) before it: a meter clock set to
-- 1970, or a replayed file of another site, must not create decades of partitions.
-- Devices registered before this column existed take the time of their oldest stored reading
-- (one index probe per device and metric), so history already accepted stays acceptable.
ALTER TABLE devices ADD COLUMN registered_at timestamptz NOT NULL DEFAULT now();

UPDATE devices d
SET registered_at = least(d.registered_at, o.oldest)
FROM (
    SELECT dv.device_pk, min(r.first_ts) AS oldest
    FROM devices dv
    CROSS JOIN metrics m
    CROSS JOIN LATERAL (
        SELECT ts AS first_ts FROM readings
        WHERE device_pk = dv.device_pk AND metric_id = m.metric_id
        ORDER BY ts LIMIT 1
    ) r
    GROUP BY dv.device_pk
) o
WHERE o.device_pk = d.device_pk;
