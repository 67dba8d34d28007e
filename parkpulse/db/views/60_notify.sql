-- Views of the notification service (notify/ owns them). Idempotent: re-applied on every migrate.

-- One row per channel, for the console's health page: a channel whose last attempts all failed is
-- 'failing', and 'dead' after 5 failures in a row or when a message to it was given up.
CREATE OR REPLACE VIEW v_notify_channel_health AS
WITH last_ok AS (
    SELECT channel_id, max(attempt_id) AS attempt_id, max(finished_at) AS at
    FROM notify_attempts WHERE ok GROUP BY channel_id
), stats AS (
    SELECT c.channel_id,
           (SELECT count(*) FROM notify_attempts a
             WHERE a.channel_id = c.channel_id AND a.ok = false
               AND a.attempt_id > coalesce(lo.attempt_id, 0)) AS failures_in_row,
           (SELECT max(a.finished_at) FROM notify_attempts a WHERE a.channel_id = c.channel_id) AS last_attempt_at,
           (SELECT a.error FROM notify_attempts a WHERE a.channel_id = c.channel_id AND a.ok = false
             ORDER BY a.attempt_id DESC LIMIT 1) AS last_error,
           lo.at AS last_success_at,
           (SELECT count(*) FROM notify_messages m WHERE m.channel_id = c.channel_id AND m.state = 'pending') AS pending,
           (SELECT min(m.created_at) FROM notify_messages m
             WHERE m.channel_id = c.channel_id AND m.state = 'pending') AS oldest_pending_at,
           (SELECT count(*) FROM notify_messages m WHERE m.channel_id = c.channel_id AND m.state = 'dead'
              AND m.created_at > coalesce(lo.at, '-infinity')) AS dead_since_success
    FROM notify_channels c LEFT JOIN last_ok lo USING (channel_id)
)
SELECT c.channel_id, c.kind, c.enabled, s.last_attempt_at, s.last_success_at, s.failures_in_row,
       s.pending, s.oldest_pending_at, s.dead_since_success, s.last_error,
       CASE WHEN NOT c.enabled THEN 'disabled'
            WHEN s.failures_in_row >= 5 OR s.dead_since_success > 0 THEN 'dead'
            WHEN s.failures_in_row > 0 THEN 'failing'
            ELSE 'ok' END AS status
FROM notify_channels c JOIN stats s USING (channel_id);

COMMENT ON VIEW v_notify_channel_health IS
    'Notification channels: last attempt and success, failures in a row, pending and dead messages, status ok/failing/dead/disabled';

-- Every composed message with its recipient and delivery state (no secrets: the channel config is not joined).
CREATE OR REPLACE VIEW v_notify_deliveries AS
SELECT m.message_id, m.contact_id, ct.user_name, ct.label, m.channel_id, ch.kind AS channel_kind, m.form,
       m.group_key, m.critical, m.language, m.title, m.items, m.first_event_at, m.state, m.attempts,
       m.created_at, m.next_attempt_at, m.sent_at, m.last_error,
       (SELECT array_agg(i.alert_id ORDER BY i.item_id) FROM notify_items i WHERE i.message_id = m.message_id) AS alert_ids
FROM notify_messages m
JOIN notify_contacts ct USING (contact_id)
JOIN notify_channels ch ON ch.channel_id = m.channel_id;
