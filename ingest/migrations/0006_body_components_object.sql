-- Up to 0005, ingest handed body_readings.components to COPY as a Python str, which the
-- jsonb dumper stored as a JSON *string* ("{\"weight\": 72.5}") instead of an object.
-- Unwrap those rows; ingest now sends the object itself.
UPDATE body_readings
   SET components = (components #>> '{}')::jsonb
 WHERE jsonb_typeof(components) = 'string';
