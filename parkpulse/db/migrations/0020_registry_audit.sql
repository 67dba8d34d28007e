-- Registry audit (issue 9): every re-parenting `parkpulse registry import --move` made — a cluster or
-- firm to another park, a workshop or gateway to another firm — with what it carried along.
-- No foreign keys: the trail outlives the parks and firms it names. Append-only.
CREATE TABLE registry_audit (
    audit_id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    action       text        NOT NULL CHECK (action IN ('move')),
    entity       text        NOT NULL CHECK (entity IN ('cluster', 'firm', 'workshop', 'gateway')),
    entity_id    text        NOT NULL,
    from_park_id text,
    to_park_id   text        NOT NULL,
    from_parent  text,                       -- the park (cluster, firm) or firm (workshop, gateway) before
    to_parent    text        NOT NULL,       -- and after
    diff         jsonb       NOT NULL,       -- {"column": [old, new], ...} of the moved entry
    carried      jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- {"gateways": n, "devices": n, "readings": n}
    source       text,                       -- the imported file
    db_user      text        NOT NULL DEFAULT current_user,
    os_user      text
);
CREATE INDEX registry_audit_entity ON registry_audit (entity, entity_id, at);

CREATE FUNCTION pp_registry_audit_refuse() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'registry_audit is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER registry_audit_no_update BEFORE UPDATE OR DELETE ON registry_audit
    FOR EACH ROW EXECUTE FUNCTION pp_registry_audit_refuse();
CREATE TRIGGER registry_audit_no_truncate BEFORE TRUNCATE ON registry_audit
    FOR EACH STATEMENT EXECUTE FUNCTION pp_registry_audit_refuse();
