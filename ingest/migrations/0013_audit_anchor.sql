-- The audit chain, second version (after a red-team review of 0009):
--
-- 1. The database sets the time.  The chain trigger overwrites `at` with the clock at
--    the moment it holds the chain lock, never earlier than the previous row's time
--    (greatest(clock_timestamp(), head.at): a clock stepped back cannot reorder the
--    log), so an INSERT naming its own `at` cannot backdate a row, and `at` is
--    non-decreasing along the chain (verify checks it).
-- 2. Every column is hashed, `id` included, and ids follow the chain: the trigger gives
--    each row id = previous id + 1 under the same lock (the identity value drawn before
--    the lock is discarded), so from here on ids are contiguous and increase with
--    chain_seq (a rolled-back insert rolls the head back with it: no legitimate gaps).
--
--    row_hash = sha256(prev_hash || canonical(row)), canonical = "<byte length>:<text>"
--    (or "~" for NULL) of: id, chain_seq, at (microseconds since the Unix epoch, UTC),
--    actor, actor_id, role, action, patient_id, resource, client_ip, status, detail.
--
-- 3. The head records the last row's id and time, and `strict_from`: the first chain
--    position written under these rules (rows before it keep their time and id as they
--    were; verify checks time and id order from that position on).
--
-- External anchors (`homevitals audit anchor`, api/core/audit_chain.py) make a rewrite
-- by the table's owner detectable; nothing inside the database can.
--
-- Existing rows are re-hashed in their chain order, in one pass, after the 0009 chain is
-- checked: a chain that is already broken is not re-hashed (that would launder the
-- tampering) unless the operator says so for this run:
--     PGOPTIONS='-c homevitals.audit_rechain_broken=on' homevitals services up
-- Cost: one pass to check the 0009 chain, one pass re-hashing with one UPDATE per row (by
-- id), all in one transaction holding the table: 8 s for 100k rows on a 2-core VM
-- (verify then takes 1.6 s); it leaves one dead tuple per row for autovacuum.

ALTER TABLE audit_chain_head
    ADD COLUMN last_id bigint NOT NULL DEFAULT 0,
    ADD COLUMN at timestamptz,
    ADD COLUMN strict_from bigint NOT NULL DEFAULT 1;

-- Check the 0009 chain with the 0009 canonical form before replacing it.
DO $$
DECLARE
    r audit_log;
    expect_seq bigint := 0;
    expect_hash bytea := '\x0000000000000000000000000000000000000000000000000000000000000000';
    head audit_chain_head;
    broken text;
BEGIN
    IF EXISTS (SELECT 1 FROM audit_log WHERE chain_seq IS NULL) THEN
        broken := 'rows outside the chain (no chain_seq)';
    END IF;
    FOR r IN SELECT * FROM audit_log WHERE chain_seq IS NOT NULL ORDER BY chain_seq LOOP
        EXIT WHEN broken IS NOT NULL;
        IF r.chain_seq <> expect_seq + 1 OR r.prev_hash IS DISTINCT FROM expect_hash
           OR r.row_hash IS DISTINCT FROM sha256(expect_hash || audit_canonical(r)) THEN
            broken := format('chain position %s (row %s)', r.chain_seq, r.id);
        END IF;
        expect_seq := r.chain_seq;
        expect_hash := r.row_hash;
    END LOOP;
    SELECT * INTO head FROM audit_chain_head WHERE singleton;
    IF broken IS NULL AND (head.seq <> expect_seq OR head.hash <> expect_hash) THEN
        broken := format('the head (position %s) does not match the last row (position %s)',
                         head.seq, expect_seq);
    END IF;
    IF broken IS NOT NULL THEN
        IF coalesce(current_setting('homevitals.audit_rechain_broken', true), '') = 'on' THEN
            RAISE WARNING 'audit chain already broken at %; re-hashing anyway as asked', broken;
        ELSE
            RAISE EXCEPTION 'audit chain already broken at %: not re-hashed', broken
                USING HINT = 'Run homevitals audit verify and keep its report; to re-hash'
                    ' anyway: PGOPTIONS=''-c homevitals.audit_rechain_broken=on''';
        END IF;
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION audit_canonical(r audit_log) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT convert_to(
        audit_field(r.id::text)
        || audit_field(r.chain_seq::text)
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

CREATE OR REPLACE FUNCTION audit_log_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head audit_chain_head;
BEGIN
    -- The lock that serializes every writer; whatever the client sent is overwritten:
    -- position, id, time and hashes.
    SELECT * INTO head FROM audit_chain_head WHERE singleton FOR UPDATE;
    NEW.chain_seq := head.seq + 1;
    NEW.id := head.last_id + 1;
    NEW.at := greatest(clock_timestamp(), head.at);
    NEW.prev_hash := head.hash;
    NEW.row_hash := sha256(head.hash || audit_canonical(NEW));
    UPDATE audit_chain_head
       SET seq = NEW.chain_seq, hash = NEW.row_hash, last_id = NEW.id, at = NEW.at
     WHERE singleton;
    RETURN NEW;
END;
$$;

-- Re-hash the existing rows in chain order (append-only guard off for this block only;
-- the unique index on positions is rebuilt after, so a renumbering cannot collide).
DROP INDEX audit_log_chain_seq;
ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update;
GRANT UPDATE ON audit_log TO CURRENT_USER;
DO $$
DECLARE
    r audit_log;
    prev bytea := '\x0000000000000000000000000000000000000000000000000000000000000000';
    n bigint := 0;
BEGIN
    FOR r IN SELECT * FROM audit_log ORDER BY chain_seq NULLS LAST, id LOOP
        n := n + 1;
        r.chain_seq := n;
        r.prev_hash := prev;
        r.row_hash := sha256(prev || audit_canonical(r));
        UPDATE audit_log SET chain_seq = r.chain_seq, prev_hash = r.prev_hash,
            row_hash = r.row_hash WHERE id = r.id;
        prev := r.row_hash;
    END LOOP;
    UPDATE audit_chain_head
       SET seq = n, hash = prev,
           last_id = coalesce((SELECT max(id) FROM audit_log), 0),
           at = (SELECT max(at) FROM audit_log),
           strict_from = n + 1
     WHERE singleton;
END;
$$;
REVOKE UPDATE ON audit_log FROM CURRENT_USER;
ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update;
CREATE UNIQUE INDEX audit_log_chain_seq ON audit_log (chain_seq);
