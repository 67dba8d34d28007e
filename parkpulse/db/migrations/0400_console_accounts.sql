-- Console accounts: users, role assignments, sessions, login throttling (console/ owns these).
-- Passwords are argon2id hashes; sessions are stored as SHA-256 of the cookie token, so a
-- database dump never yields a usable session id.

CREATE TABLE console_users (
    user_name     text PRIMARY KEY CHECK (user_name ~ '^[a-z0-9][a-z0-9._-]{1,63}$'),
    display_name  text,
    password_hash text        NOT NULL,
    disabled      boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz
);

-- One row per scope grant. inspector: one row per park; park_manager: exactly one park;
-- operator: exactly one firm; admin: one row, no scope.
CREATE TABLE console_roles (
    role_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_name text NOT NULL REFERENCES console_users ON DELETE CASCADE,
    role      text NOT NULL CHECK (role IN ('admin', 'inspector', 'park_manager', 'operator')),
    park_id   text REFERENCES parks ON DELETE CASCADE,
    firm_id   text REFERENCES firms ON DELETE CASCADE,
    CHECK (
        (role = 'admin' AND park_id IS NULL AND firm_id IS NULL)
        OR (role IN ('inspector', 'park_manager') AND park_id IS NOT NULL AND firm_id IS NULL)
        OR (role = 'operator' AND firm_id IS NOT NULL AND park_id IS NULL)
    )
);
CREATE UNIQUE INDEX console_roles_grant ON console_roles (user_name, role, coalesce(park_id, ''), coalesce(firm_id, ''));

CREATE TABLE console_sessions (
    token_sha256 bytea PRIMARY KEY,
    user_name    text        NOT NULL REFERENCES console_users ON DELETE CASCADE,
    csrf_token   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ip           text,
    user_agent   text
);
CREATE INDEX console_sessions_user ON console_sessions (user_name);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

-- Failed logins per key ('user:<name>' or 'ip:<address>'), for throttling with backoff.
CREATE TABLE console_login_failures (
    key           text PRIMARY KEY,
    failures      integer     NOT NULL DEFAULT 0,
    last_failure  timestamptz NOT NULL DEFAULT now(),
    blocked_until timestamptz
);
