-- Size and sha256 of every dead letter's payload (issue 9). A message whose full dead letter the
-- database refuses too is kept as a minimal one: topic, reason, size and hash, with an empty
-- payload, so it can be matched against the gateway's spool; ingest never blocks on it.
ALTER TABLE dead_letters ADD COLUMN payload_bytes integer;
ALTER TABLE dead_letters ADD COLUMN payload_sha256 bytea;
