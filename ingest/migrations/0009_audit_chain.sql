-- A tamper-evident audit log: every row is chained to the one before it by SHA-256.
--
--   row_hash = sha256(prev_hash || canonical(row))      prev_hash of the first row: 32 zero bytes
--
-- canonical(row) is each field, in this order, written as "<byte length>:<text>" (or "~"
-- for NULL), concatenated: chain_seq, at (microseconds since the Unix epoch, UTC),
-- actor, actor_id, role, action, patient_id, resource, client_ip, status, detail (as
-- PostgreSQL renders the jsonb).  Length prefixes make the encoding unambiguous, and
-- nothing in it depends on the session's time zone or DateStyle.
--
-- One serialized place computes it: a BEFORE INSERT trigger that locks the single row
-- of audit_chain_head (FOR UPDATE: held to the end of the inserting transaction), so
-- API workers writing at once queue for the head and can never fork the chain.  The
-- position in the chain is chain_seq, taken under that lock (identity ids are handed
-- out before the lock, so id order need not be chain order).  The head also records
-- the last position and hash, so rows cut off the end are detected too.
--
-- `homevitals audit verify` (api/core/audit_chain.py) recomputes the chain
-- independently in Python and names the first edited, deleted or inserted row.

ALTER TABLE audit_log
    ADD COLUMN chain_seq bigint,
    ADD COLUMN prev_hash bytea,
    ADD COLUMN row_hash bytea;

CREATE TABLE audit_chain_head (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq        bigint NOT NULL,
    hash       bytea NOT NULL
);

CREATE FUNCTION audit_field(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN value IS NULL THEN '~'
                ELSE octet_length(convert_to(value, 'UTF8'))::text || ':' || value END
$$;

CREATE FUNCTION audit_canonical(r audit_log) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT convert_to(
        audit_field(r.chain_seq::text)
        || audit_field((extract(epoch FROM r.at) * 1000000)::bigint::text)
        || audit_field(r.actor)
        || audit_field(r.actor_id::text)
        || audit_field(r.role)
        || audit_field(r.action)
        || audit_field(r.patient_id::text)
        || audit_field(r.resource)
        || audit_field(r.client_ip)
        || audit_field(r.status::text)
        || audit_field(r.detail::text),
        'UTF8')
$$;

CREATE FUNCTION audit_log_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head audit_chain_head;
BEGIN
    -- The lock that serializes every writer; whatever the client sent is overwritten.
    SELECT * INTO head FROM audit_chain_head WHERE singleton FOR UPDATE;
    NEW.chain_seq := head.seq + 1;
    NEW.prev_hash := head.hash;
    NEW.row_hash := sha256(head.hash || audit_canonical(NEW));
    UPDATE audit_chain_head SET seq = NEW.chain_seq, hash = NEW.row_hash WHERE singleton;
    RETURN NEW;
END;
$$;

-- Chain the rows written before this migration, in id order (the triggers that keep
-- the table append-only are off for this one statement block only).
INSERT INTO audit_chain_head (seq, hash) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000');

ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update;
GRANT UPDATE ON audit_log TO CURRENT_USER;
DO $$
DECLARE
    r audit_log;
    head audit_chain_head;
BEGIN
    FOR r IN SELECT * FROM audit_log ORDER BY id LOOP
        SELECT * INTO head FROM audit_chain_head WHERE singleton;
        r.chain_seq := head.seq + 1;
        r.prev_hash := head.hash;
        r.row_hash := sha256(head.hash || audit_canonical(r));
        UPDATE audit_log SET chain_seq = r.chain_seq, prev_hash = r.prev_hash,
            row_hash = r.row_hash WHERE id = r.id;
        UPDATE audit_chain_head SET seq = r.chain_seq, hash = r.row_hash WHERE singleton;
    END LOOP;
END;
$$;
REVOKE UPDATE ON audit_log FROM CURRENT_USER;
ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update;

CREATE UNIQUE INDEX audit_log_chain_seq ON audit_log (chain_seq);
CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_chain();

-- The head is changed only by the trigger; nobody deletes or truncates it.
CREATE FUNCTION audit_chain_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_chain_head may not be deleted or truncated'
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_chain_head_no_delete BEFORE DELETE ON audit_chain_head
    FOR EACH ROW EXECUTE FUNCTION audit_chain_head_guard();
CREATE TRIGGER audit_chain_head_no_truncate BEFORE TRUNCATE ON audit_chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_head_guard();
REVOKE DELETE, TRUNCATE ON audit_chain_head FROM PUBLIC;
REVOKE DELETE, TRUNCATE ON audit_chain_head FROM CURRENT_USER;
