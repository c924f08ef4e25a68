-- One open dead letter per content (GitHub issue #13): a gateway re-sends a batch until
-- ingest confirms it with a receipt, and the broker re-delivers a message whose ack was
-- lost, so the same invalid reading (or the same unreadable message) can arrive many
-- times.  It is parked once.
--
-- The content key hashes topic, reason and payload, leaving out the envelope fields a
-- re-send changes: ``sent_at`` (after schema and gateway, where every encoder of ours
-- puts it) and a trailing ``batch`` id.  Only those top-level positions are matched, so
-- a reading's own fields (a ``details.batch``, say) stay part of the key.  The payload
-- is read as escaped text (``encode(…, 'escape')``), which never fails, whatever the
-- bytes: no exception blocks, no subtransactions per row.
--
-- The check is a BEFORE INSERT trigger, so every writer (COPY of a batch's rejects,
-- the re-processing of dead letters, the redecode of device records) gets it.  Two
-- workers parking the same content at once are serialised on one advisory lock, taken
-- once per transaction that writes a dead letter (dead letters are rare; one lock
-- cannot deadlock and does not grow the lock table with the batch); the second one's
-- EXISTS runs after the first committed and sees its row.  Rows the same statement
-- inserted before are visible to a row-level BEFORE trigger's query, so one batch
-- holding the same invalid reading twice parks it once.
-- Re-processing marks a dead letter reprocessed *before* running it again, so what
-- fails again is parked anew with the current reason (ingest/deadletters.py).

CREATE FUNCTION dead_letter_content_key(topic text, reason text, payload bytea)
RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT sha256(convert_to(
        coalesce(topic, '') || E'\x1f' || coalesce(reason, '') || E'\x1f' ||
        regexp_replace(
            regexp_replace(
                encode(payload, 'escape'),
                '^(\{"schema": ?"[^"]*", ?"gateway": ?"[^"]*", ?)"sent_at": ?"[^"]*", ?', '\1'),
            ', ?"batch": ?"[A-Za-z0-9_-]{1,64}"\}$', '}'),
        'UTF8'))
$$;

ALTER TABLE dead_letters ADD COLUMN content_key bytea;
UPDATE dead_letters SET content_key = dead_letter_content_key(topic, reason, payload);
CREATE INDEX dead_letters_content_key ON dead_letters (content_key) WHERE reprocessed_at IS NULL;

CREATE FUNCTION dead_letters_park_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.content_key := dead_letter_content_key(NEW.topic, NEW.reason, NEW.payload);
    -- Two-int advisory key space (18518 = 0x4856, "HV"), apart from the one-bigint locks.
    PERFORM pg_advisory_xact_lock(18518, 11);
    IF EXISTS (SELECT 1 FROM dead_letters
               WHERE content_key = NEW.content_key AND reprocessed_at IS NULL) THEN
        RETURN NULL;  -- parked already: keep the first
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER dead_letters_park_once BEFORE INSERT ON dead_letters
    FOR EACH ROW EXECUTE FUNCTION dead_letters_park_once();
