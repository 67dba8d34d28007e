-- Managed gateways (fleet/ owns these, issue 14): each gateway's desired configuration, versioned,
-- with who, when and why; the platform's library of meter profiles, versioned; what the
-- publisher (`parkpulse fleet serve`) last put on each gateway's retained config topic.
-- Rows of fleet_configs and fleet_profiles are never updated: a change is a new version.

CREATE TABLE fleet_profiles (
    source     text        NOT NULL CHECK (source IN ('modbus', 'dlt645')),
    name       text        NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,63}$'),
    version    integer     NOT NULL CHECK (version >= 1),
    doc        json        NOT NULL,   -- as stored (json, not jsonb: numbers keep their form)
    sha256     text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_by text        NOT NULL CHECK (created_by <> ''),
    created_at timestamptz NOT NULL DEFAULT now(),
    reason     text        NOT NULL CHECK (reason <> ''),
    PRIMARY KEY (source, name, version)
);

CREATE TABLE fleet_configs (
    gateway_id  text        NOT NULL REFERENCES gateways ON DELETE CASCADE,
    version     bigint      NOT NULL CHECK (version >= 1),
    config      json        NOT NULL,   -- the managed keys of the gateway file (json: numbers keep their form, so sha256 holds)
    profiles    json        NOT NULL,   -- {source: {name: profile document}} the config uses, frozen with it
    sha256      text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),  -- wire config_digest(config, profiles)
    created_by  text        NOT NULL CHECK (created_by <> ''),
    created_at  timestamptz NOT NULL DEFAULT now(),
    reason      text        NOT NULL CHECK (reason <> ''),
    rollback_of bigint,                 -- the version whose content this one restores
    PRIMARY KEY (gateway_id, version)
);

CREATE TABLE fleet_published (
    gateway_id   text        PRIMARY KEY REFERENCES gateways ON DELETE CASCADE,
    topic        text        NOT NULL,
    version      bigint      NOT NULL,
    sha256       text        NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);
