-- A per-install secret of the console (console/ owns it): the key of the keyed hash that failed
-- logins are logged and throttled under when the attempted user name is not a user (it may be a
-- password typed into the wrong field, so the raw string is never logged or stored).
-- gen_random_uuid() draws from the server's strong random source: 2 × 122 random bits.

CREATE TABLE console_secrets (
    name       text PRIMARY KEY,
    value      bytea       NOT NULL CHECK (length(value) >= 16),
    created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO console_secrets (name, value)
VALUES ('login_name_key', decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));

-- Failure rows of names that are not users were keyed 'user:<raw name>' before: drop them.
DELETE FROM console_login_failures f
WHERE f.key LIKE 'user:%' AND NOT EXISTS (SELECT 1 FROM console_users u WHERE 'user:' || u.user_name = f.key);
