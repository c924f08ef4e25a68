-- One open dead letter per content (GitHub issue #13): a gateway re-sends a batch until
-- ingest confirms it with a receipt, and the broker re-delivers a message whose ack was
-- lost, so the same invalid reading (or the same unreadable message) can arrive many
-- times.  It is parked once.
--
-- The content key hashes topic, reason and payload; for a JSON payload the envelope
-- fields a re-send changes (``sent_at``, ``batch``) are left out.  A payload
-- PostgreSQL cannot read as jsonb (NaN tokens, \u0000, not UTF-8, not JSON) has the
-- ``"sent_at": "..."`` text removed instead, or is hashed as its bytes.
--
-- The check is a BEFORE INSERT trigger, so every writer (COPY of a batch's rejects,
-- the re-processing of dead letters, the redecode of device records) gets it.  Two
-- workers parking the same content at once are serialised on an advisory lock of the
-- key; the second one's EXISTS runs after the first committed and sees its row.
-- Re-processing marks a dead letter reprocessed *before* running it again, so what
-- fails again is parked anew with the current reason (ingest/deadletters.py).

CREATE FUNCTION dead_letter_content_key(topic text, reason text, payload bytea)
RETURNS bytea LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    body bytea;
BEGIN
    BEGIN
        body := convert_to(((convert_from(payload, 'UTF8')::jsonb) - 'sent_at' - 'batch')::text,
                           'UTF8');
    EXCEPTION WHEN OTHERS THEN
        BEGIN
            body := convert_to(
                regexp_replace(convert_from(payload, 'UTF8'), '"sent_at": ?"[^"]*",? ?', '', 'g'),
                'UTF8');
        EXCEPTION WHEN OTHERS THEN
            body := payload;
        END;
    END;
    RETURN sha256(convert_to(coalesce(topic, '') || E'\x1f' || coalesce(reason, '') || E'\x1f',
                             'UTF8') || body);
END
$$;

ALTER TABLE dead_letters ADD COLUMN content_key bytea;
UPDATE dead_letters SET content_key = dead_letter_content_key(topic, reason, payload);
CREATE INDEX dead_letters_content_key ON dead_letters (content_key) WHERE reprocessed_at IS NULL;

CREATE FUNCTION dead_letters_park_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.content_key := dead_letter_content_key(NEW.topic, NEW.reason, NEW.payload);
    -- Two-int advisory key space (0x4856 = "HV"): apart from the one-bigint locks.
    PERFORM pg_advisory_xact_lock(18518, hashtext(encode(NEW.content_key, 'hex')));
    IF EXISTS (SELECT 1 FROM dead_letters
               WHERE content_key = NEW.content_key AND reprocessed_at IS NULL) THEN
        RETURN NULL;  -- parked already: keep the first
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER dead_letters_park_once BEFORE INSERT ON dead_letters
    FOR EACH ROW EXECUTE FUNCTION dead_letters_park_once();
