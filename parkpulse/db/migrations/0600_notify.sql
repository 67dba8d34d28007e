-- Notifications that reach a phone (notify/ owns these): channels, contacts, subscriptions, the
-- intake cursor over alert_events, the per-recipient items, the outbox of composed messages and
-- the audit of every delivery attempt. Views are in views/60_notify.sql.

-- A channel: one SMTP server, one WeCom or DingTalk group robot, one SMS HTTP adapter.
-- `config` holds what may be shown; `secrets` (SMTP password, robot key, DingTalk access token and
-- signing secret, SMS API key) is read only to deliver and is never listed, logged or shown.
CREATE TABLE notify_channels (
    channel_id text PRIMARY KEY CHECK (channel_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    kind       text        NOT NULL CHECK (kind IN ('email', 'wecom', 'dingtalk', 'sms')),
    config     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    secrets    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    enabled    boolean     NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A recipient: a console user's address on a channel (e-mail address, mobile number), or a group
-- robot (user_name NULL, address NULL). Language, quiet hours and the rate limit are per recipient.
CREATE TABLE notify_contacts (
    contact_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_name   text REFERENCES console_users ON DELETE CASCADE,
    label       text,
    channel_id  text        NOT NULL REFERENCES notify_channels ON DELETE CASCADE,
    address     text,
    language    text        NOT NULL DEFAULT 'zh' CHECK (language IN ('zh', 'en')),
    quiet_start time,
    quiet_end   time,
    timezone    text        NOT NULL DEFAULT 'Asia/Shanghai',
    enabled     boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL)),
    CHECK (user_name IS NOT NULL OR label IS NOT NULL)
);
CREATE UNIQUE INDEX notify_contacts_unique
    ON notify_contacts (coalesce(user_name, ''), channel_id, coalesce(address, ''), coalesce(label, ''));

-- Who gets what: exactly one of a user (all their contacts, or those on channel_id), a role (every
-- user holding it for the alert's park or firm; admin everywhere), or one contact (a group robot).
CREATE TABLE notify_subscriptions (
    subscription_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_name    text REFERENCES console_users ON DELETE CASCADE,
    role         text CHECK (role IN ('admin', 'inspector', 'park_manager', 'operator')),
    contact_id   bigint REFERENCES notify_contacts ON DELETE CASCADE,
    channel_id   text REFERENCES notify_channels ON DELETE CASCADE,
    park_id      text,                                  -- NULL = every park
    kinds        text[],                                -- NULL = every alert kind
    min_severity text        NOT NULL DEFAULT 'warning' CHECK (min_severity IN ('info', 'warning', 'critical')),
    actions      text[]      NOT NULL DEFAULT ARRAY['fired', 'reopened'],
    enabled      boolean     NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (num_nonnulls(user_name, role, contact_id) = 1)
);

-- The service's durable position in alert_events.
CREATE TABLE notify_cursor (
    name     text PRIMARY KEY,
    event_id bigint      NOT NULL,
    moved_at timestamptz NOT NULL DEFAULT now()
);

-- One row per (alert event, recipient): the unit of exactly-once. It joins one message.
CREATE TABLE notify_items (
    item_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   bigint      NOT NULL REFERENCES alert_events,
    contact_id bigint      NOT NULL REFERENCES notify_contacts ON DELETE CASCADE,
    alert_id   bigint      NOT NULL,
    park_id    text        NOT NULL,
    kind       text        NOT NULL,
    severity   text        NOT NULL,
    action     text        NOT NULL,
    event_at   timestamptz NOT NULL,
    taken_at   timestamptz NOT NULL DEFAULT now(),
    message_id bigint,
    UNIQUE (event_id, contact_id)
);
CREATE INDEX notify_items_waiting ON notify_items (contact_id, item_id) WHERE message_id IS NULL;
CREATE INDEX notify_items_message ON notify_items (message_id);

-- The outbox: one composed message to one recipient (a single alert, a group of one park and
-- kind, or a digest after quiet hours or a rate limit).
CREATE TABLE notify_messages (
    message_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contact_id      bigint      NOT NULL REFERENCES notify_contacts ON DELETE CASCADE,
    channel_id      text        NOT NULL REFERENCES notify_channels ON DELETE CASCADE,
    idempotency_key text        NOT NULL UNIQUE,
    form            text        NOT NULL CHECK (form IN ('single', 'group', 'digest')),
    group_key       text,                               -- park|kind of a single or group message
    critical        boolean     NOT NULL DEFAULT false,
    language        text        NOT NULL,
    title           text        NOT NULL,
    body            text        NOT NULL,
    items           integer     NOT NULL,
    first_event_at  timestamptz NOT NULL,
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    sent_at         timestamptz
);
CREATE INDEX notify_messages_due ON notify_messages (next_attempt_at) WHERE state = 'pending';
CREATE INDEX notify_messages_recent ON notify_messages (contact_id, created_at);
ALTER TABLE notify_items ADD CONSTRAINT notify_items_message_fk
    FOREIGN KEY (message_id) REFERENCES notify_messages ON DELETE SET NULL;

-- Every delivery attempt. An attempt with finished_at NULL was cut short (the service stopped
-- while it was in flight); the message is tried again.
CREATE TABLE notify_attempts (
    attempt_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  bigint      NOT NULL REFERENCES notify_messages ON DELETE CASCADE,
    channel_id  text        NOT NULL,
    attempt     integer     NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    ok          boolean,
    status      text,
    error       text
);
CREATE INDEX notify_attempts_channel ON notify_attempts (channel_id, attempt_id);
CREATE INDEX notify_attempts_message ON notify_attempts (message_id);
