-- Whether a device is in service, next to when it was last seen: a disabled device (an import
-- channel, a meter taken out) is expected to be silent.
CREATE OR REPLACE VIEW v_device_last_seen AS
SELECT dv.park_id, dv.firm_id, dv.gateway_id, dv.device_id, dv.device_pk, dv.kind, dv.poll_interval_s,
       s.last_ts, s.received_at, s.last_quality, s.readings,
       extract(epoch FROM (now() - s.last_ts)) AS silent_s,
       dv.enabled
FROM v_devices dv
LEFT JOIN device_status s USING (device_pk);
