-- One row per source record, whatever its corrected time (GitHub issue #13).
--
-- A reading's id names the record the device or the export holds (readings/identity.py).
-- Up to 0007 the unique indexes were (reading_id, time): TimescaleDB requires a unique
-- index on a hypertable to include the partitioning column, so the same record re-fetched
-- with another skew-corrected time (a skew change beyond the tolerance, a full
-- re-download after the gateway lost its state) was stored again.  Now:
--
-- * reading_identity, a plain table keyed by reading_id alone, holds one claim per
--   stored reading (its table and time); its primary key is the uniqueness TimescaleDB
--   cannot give a hypertable without the time column.  The writer (ingest/writer.py,
--   used by MQTT ingest, bulk import and redecode) COPYs a batch's claims and its rows
--   in one transaction; a batch holding a claimed id goes through a staging table that
--   claims with ON CONFLICT DO NOTHING and inserts only the rows it claimed.  The first
--   arrival of a record stays, with its time (the skew measured closest to the
--   measurement).  Concurrent writers of one id serialize on the primary key; the later
--   one falls back and skips.  (A BEFORE INSERT trigger claiming per row enforced the
--   same for any SQL but cost 57-64 % of ingest throughput: docs/performance.md.)
--   Deleting a reading releases its claim (AFTER DELETE trigger), moving it moves the
--   claim; retention releases the claims of the chunks it drops (ingest/storage.py).
-- * record_type (cgm, scan, strip, control, manual, measured) is stored with every
--   reading.  Rows stored before this migration keep NULL ("not recorded": the kind's
--   usual type, except that LibreView scans were not told from strips), except control-
--   solution tests, set below; no UPDATE rewrites the big tables.
-- * Provenance: blood_pressure and body_readings keep the device's own values and units
--   (`original`, jsonb {component: [value, unit]}), as glucose keeps original_value/unit.
--
-- Existing rows, without loss:
-- 1. Ids change only where the recipe now names more than it did: control-solution tests
--    (type=control) and readings of a multi-user device naming its user (user=<id>).
--    Those ids are recomputed here from the stored fields with the same recipe
--    (tests/ingest/test_migration_0008.py checks it against readings.identity), so a
--    record sent again after the upgrade meets its stored row.  Rows without a device
--    time keep their id (it was built from the receive time).
-- 2. Rows sharing an id (the same record stored twice at different times) are resolved
--    as ingest now resolves them: the first received (then the earliest time) stays; the
--    others move to reading_duplicates as whole rows (jsonb), so nothing is lost.
-- 3. reading_identity is filled from the rows that stay, then the triggers are created.

ALTER TABLE glucose ADD COLUMN record_type text;
ALTER TABLE blood_pressure ADD COLUMN record_type text, ADD COLUMN original jsonb;
ALTER TABLE body_readings ADD COLUMN record_type text, ADD COLUMN original jsonb;

-- The id recipe of readings.identity (hv-id-1 key text -> SHA-256 -> 16 bytes, version
-- nibble 5, RFC 4122 variant), for this migration only (pg_temp: gone with its session).
CREATE FUNCTION pg_temp.hv_reading_id(key text) RETURNS uuid LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(
        set_byte(
            set_byte(substring(sha256(convert_to(key, 'UTF8')) FROM 1 FOR 16),
                     6, (get_byte(sha256(convert_to(key, 'UTF8')), 6) & 15) | 80),
            8, (get_byte(sha256(convert_to(key, 'UTF8')), 8) & 63) | 128),
        'hex')::uuid
$$;

-- 1. Control-solution tests sent by a gateway (a meter's record: device time and sequence
--    number as stored); imported rows are never control tests.
UPDATE glucose
   SET record_type = 'control',
       reading_id = pg_temp.hv_reading_id(concat_ws(E'\x1f', 'hv-id-1', device_id, 'glucose',
                                                    device_time, coalesce(sequence::text, ''),
                                                    'type=control'))
 WHERE 'control_solution' = ANY(conditions) AND source = 'smbg' AND device_time IS NOT NULL;
UPDATE blood_pressure
   SET reading_id = pg_temp.hv_reading_id(concat_ws(E'\x1f', 'hv-id-1', device_id,
                                                    'blood_pressure', device_time, '',
                                                    'user=' || user_id))
 WHERE user_id IS NOT NULL AND user_id <> 255 AND device_time IS NOT NULL;
UPDATE body_readings
   SET reading_id = pg_temp.hv_reading_id(concat_ws(E'\x1f', 'hv-id-1', device_id, kind,
                                                    device_time, '',
                                                    'user=' || (details ->> 'user_id')))
 WHERE jsonb_typeof(details -> 'user_id') = 'number' AND device_time IS NOT NULL;

-- 2. Rows sharing an id: the first received stays, the others are kept here.
CREATE TABLE reading_duplicates (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tbl         text NOT NULL,          -- the readings table the row came from
    reading_id  uuid NOT NULL,
    time        timestamptz NOT NULL,
    row_data    jsonb NOT NULL,         -- the whole row as it was
    moved_at    timestamptz NOT NULL DEFAULT now(),
    reason      text NOT NULL
);
CREATE INDEX reading_duplicates_reading ON reading_duplicates (reading_id);

-- Filled first and keyed after (a sorted index build, not one random btree insert per
-- existing row); the key is added below.
CREATE TABLE reading_identity (
    reading_id  uuid NOT NULL,
    tbl         text NOT NULL CHECK (tbl IN ('glucose', 'blood_pressure', 'body_readings')),
    time        timestamptz NOT NULL    -- the time of the row that holds the claim
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['glucose', 'blood_pressure', 'body_readings'] LOOP
        -- (reading_id, time) was unique per table up to 0007: it names one row.  Only
        -- ids stored more than once are ranked.
        EXECUTE format($q$
            CREATE TEMP TABLE hv_later ON COMMIT DROP AS
            SELECT reading_id, time FROM (
                SELECT reading_id, time,
                       row_number() OVER (PARTITION BY reading_id
                                          ORDER BY received_at, time) AS n
                  FROM %1$I
                 WHERE reading_id IN (SELECT reading_id FROM %1$I
                                       GROUP BY reading_id HAVING count(*) > 1)) r
             WHERE n > 1$q$,
            t);
        EXECUTE format($q$
            INSERT INTO reading_duplicates (tbl, reading_id, time, row_data, reason)
            SELECT %1$L, x.reading_id, x.time, to_jsonb(x),
                   'migration 0008: the same source record stored earlier'
              FROM %1$I x JOIN hv_later USING (reading_id, time)$q$, t);
        EXECUTE format($q$
            DELETE FROM %1$I x USING hv_later l
             WHERE x.reading_id = l.reading_id AND x.time = l.time$q$, t);
        EXECUTE format($q$
            INSERT INTO reading_identity (reading_id, tbl, time)
            SELECT reading_id, %1$L, time FROM %1$I$q$, t);
        DROP TABLE hv_later;
    END LOOP;
END;
$$;
-- One id in two tables cannot happen (the kind is part of the key, and a kind has one
-- table); if a hash collision ever made it so, this fails and the migration rolls back
-- whole, losing nothing.
ALTER TABLE reading_identity ADD PRIMARY KEY (reading_id);
-- No second index: every claim pays for each index, and only retention (daily, one
-- worker) looks claims up by table and time; it scans.

-- 3. Claims follow the rows they belong to.
CREATE FUNCTION reading_identity_release() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM reading_identity WHERE reading_id = OLD.reading_id AND time = OLD.time;
    RETURN NULL;
END;
$$;

-- Moving a stored reading to another id or time moves its claim (a taken id fails).
CREATE FUNCTION reading_identity_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.reading_id IS DISTINCT FROM OLD.reading_id OR NEW.time IS DISTINCT FROM OLD.time THEN
        UPDATE reading_identity SET reading_id = NEW.reading_id, time = NEW.time
         WHERE reading_id = OLD.reading_id AND time = OLD.time;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER reading_identity_release AFTER DELETE ON glucose
    FOR EACH ROW EXECUTE FUNCTION reading_identity_release();
CREATE TRIGGER reading_identity_release AFTER DELETE ON blood_pressure
    FOR EACH ROW EXECUTE FUNCTION reading_identity_release();
CREATE TRIGGER reading_identity_release AFTER DELETE ON body_readings
    FOR EACH ROW EXECUTE FUNCTION reading_identity_release();
CREATE TRIGGER reading_identity_move BEFORE UPDATE OF reading_id, time ON glucose
    FOR EACH ROW EXECUTE FUNCTION reading_identity_move();
CREATE TRIGGER reading_identity_move BEFORE UPDATE OF reading_id, time ON blood_pressure
    FOR EACH ROW EXECUTE FUNCTION reading_identity_move();
CREATE TRIGGER reading_identity_move BEFORE UPDATE OF reading_id, time ON body_readings
    FOR EACH ROW EXECUTE FUNCTION reading_identity_move();
