-- Ingest (ingest/): last seen and poll health per device (tables in migrations 0003, 0100).
-- Idempotent: re-applied by every `parkpulse db migrate` (README.md in this folder).

-- Whether a device is in service, next to when it was last seen: a disabled device (an import
-- channel, a meter taken out) is expected to be silent. Poll health as the gateway reports it.
CREATE OR REPLACE VIEW v_device_last_seen AS
SELECT dv.park_id, dv.firm_id, dv.gateway_id, dv.device_id, dv.device_pk, dv.kind, dv.poll_interval_s,
       s.last_ts, s.received_at, s.last_quality, s.readings,
       extract(epoch FROM (now() - s.last_ts)) AS silent_s,
       dv.enabled,
       h.poll_lag_ms_last, h.poll_lag_ms_p99, h.reported_at AS health_reported_at
FROM v_devices dv
LEFT JOIN device_status s USING (device_pk)
LEFT JOIN device_health h USING (device_pk);
