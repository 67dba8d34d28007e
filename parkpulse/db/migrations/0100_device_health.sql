-- Poll health per device as the gateway reports it in its retained status message (issue 5):
-- ingest upserts one row per known device in the same transaction as gateway_status.
CREATE TABLE device_health (
    device_pk        integer PRIMARY KEY REFERENCES devices ON DELETE CASCADE,
    poll_lag_ms_last double precision,   -- how late the latest poll started behind its slot
    poll_lag_ms_p99  double precision,   -- 99th percentile over the gateway's recent window
    overruns         bigint,             -- counters since the gateway started
    timeouts         bigint,
    exceptions       bigint,
    reported_at      timestamptz NOT NULL  -- the status message's ts (gateway clock), else receipt time
);

-- The contract view keeps every column of 0012 in order; the health columns are appended.
CREATE OR REPLACE VIEW v_device_last_seen AS
SELECT dv.park_id, dv.firm_id, dv.gateway_id, dv.device_id, dv.device_pk, dv.kind, dv.poll_interval_s,
       s.last_ts, s.received_at, s.last_quality, s.readings,
       extract(epoch FROM (now() - s.last_ts)) AS silent_s,
       dv.enabled,
       h.poll_lag_ms_last, h.poll_lag_ms_p99, h.reported_at AS health_reported_at
FROM v_devices dv
LEFT JOIN device_status s USING (device_pk)
LEFT JOIN device_health h USING (device_pk);
