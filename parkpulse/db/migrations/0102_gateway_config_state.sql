-- The `config` object of a gateway's retained status (docs/wire-format.md, issue 14): the mode it
-- runs in, the version it was asked for, the version and SHA-256 it runs, what became of the last
-- push. Ingest writes these with the rest of gateway_status; a status without the object (an
-- older gateway, a last will) keeps the values last reported.
ALTER TABLE gateway_status
    ADD COLUMN config_mode            text CHECK (config_mode IN ('local', 'managed')),
    ADD COLUMN config_desired_version bigint CHECK (config_desired_version >= 1),
    ADD COLUMN config_applied_version bigint CHECK (config_applied_version >= 1),
    ADD COLUMN config_applied_sha256  text CHECK (config_applied_sha256 ~ '^[0-9a-f]{64}$'),
    ADD COLUMN config_state           text CHECK (config_state IN ('applied', 'rejected', 'rolled_back', 'applying')),
    ADD COLUMN config_reason          text,
    ADD COLUMN config_at              timestamptz;
