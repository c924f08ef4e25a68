-- Patients, gateways, devices and their bindings; readings hypertables; dead letters.
CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE patients (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    external_id  text NOT NULL UNIQUE,          -- id used at import or enrollment
    mrn          text UNIQUE,
    given_name   text,
    family_name  text,
    birth_date   date,
    timezone     text NOT NULL DEFAULT 'America/New_York',
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gateways (
    id            text PRIMARY KEY,             -- = its MQTT username
    patient_id    bigint REFERENCES patients(id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz,
    state         text,                         -- online / offline (retained status)
    outbox_depth  integer,
    version       text
);

CREATE TABLE devices (
    id               text PRIMARY KEY,          -- device identity as on the wire
    gateway_id       text,
    profile          text,
    name             text,
    manufacturer     text,
    model            text,
    serial           text,
    battery_percent  smallint,
    clock_skew_s     double precision,
    last_sync        timestamptz,
    last_error       text,
    first_seen       timestamptz NOT NULL DEFAULT now()
);

-- Which patient a device belonged to, when.  Readings are attributed by measurement time.
CREATE TABLE device_bindings (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   text NOT NULL,
    patient_id  bigint NOT NULL REFERENCES patients(id),
    valid       tstzrange NOT NULL,
    source      text NOT NULL DEFAULT 'pairing',
    EXCLUDE USING gist (device_id WITH =, valid WITH &&)
);

-- Fingerstick (smbg) and CGM glucose, canonical mg/dL.
CREATE TABLE glucose (
    time            timestamptz NOT NULL,       -- UTC, corrected for device clock skew
    reading_id      uuid NOT NULL,
    device_id       text NOT NULL,
    patient_id      bigint,                     -- NULL until a binding covers it
    source          text NOT NULL CHECK (source IN ('smbg', 'cgm')),
    mgdl            double precision,           -- NULL only for a HI/LO result without a number
    conditions      text[] NOT NULL DEFAULT '{}',
    sequence        integer,
    device_time     text,                       -- as the device reported it (local)
    skew_s          double precision,
    original_value  double precision,
    original_unit   text,
    gateway_id      text,
    received_at     timestamptz NOT NULL DEFAULT now()
);
SELECT create_hypertable('glucose', by_range('time', INTERVAL '7 days'));
CREATE UNIQUE INDEX glucose_identity ON glucose (reading_id, time);
CREATE INDEX glucose_patient_time ON glucose (patient_id, time DESC);
CREATE INDEX glucose_device_time ON glucose (device_id, time DESC);
CREATE INDEX glucose_unattributed ON glucose (device_id) WHERE patient_id IS NULL;

CREATE TABLE blood_pressure (
    time            timestamptz NOT NULL,
    reading_id      uuid NOT NULL,
    device_id       text NOT NULL,
    patient_id      bigint,
    systolic        double precision NOT NULL,  -- mmHg
    diastolic       double precision NOT NULL,
    mean_arterial   double precision,
    pulse           double precision,           -- beats/min
    conditions      text[] NOT NULL DEFAULT '{}',
    device_time     text,
    skew_s          double precision,
    original_unit   text,
    user_id         smallint,
    gateway_id      text,
    received_at     timestamptz NOT NULL DEFAULT now()
);
SELECT create_hypertable('blood_pressure', by_range('time', INTERVAL '30 days'));
CREATE UNIQUE INDEX blood_pressure_identity ON blood_pressure (reading_id, time);
CREATE INDEX blood_pressure_patient_time ON blood_pressure (patient_id, time DESC);
CREATE INDEX blood_pressure_unattributed ON blood_pressure (device_id) WHERE patient_id IS NULL;

-- Weight, SpO2, temperature: one value column per component in canonical units.
CREATE TABLE body_readings (
    time            timestamptz NOT NULL,
    reading_id      uuid NOT NULL,
    device_id       text NOT NULL,
    patient_id      bigint,
    kind            text NOT NULL,
    components      jsonb NOT NULL,
    conditions      text[] NOT NULL DEFAULT '{}',
    device_time     text,
    skew_s          double precision,
    gateway_id      text,
    received_at     timestamptz NOT NULL DEFAULT now()
);
SELECT create_hypertable('body_readings', by_range('time', INTERVAL '30 days'));
CREATE UNIQUE INDEX body_readings_identity ON body_readings (reading_id, time);
CREATE INDEX body_readings_patient_time ON body_readings (patient_id, kind, time DESC);
CREATE INDEX body_readings_unattributed ON body_readings (device_id) WHERE patient_id IS NULL;

-- Every message that could not be ingested, with the reason; nothing is lost.
CREATE TABLE dead_letters (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at     timestamptz NOT NULL DEFAULT now(),
    topic           text NOT NULL,
    gateway_id      text,
    device_id       text,
    payload         bytea NOT NULL,
    reason          text NOT NULL,
    reading_index   integer,                    -- which reading of a batch, if one
    reprocessed_at  timestamptz,
    outcome         text
);
CREATE INDEX dead_letters_open ON dead_letters (received_at) WHERE reprocessed_at IS NULL;
CREATE INDEX dead_letters_device ON dead_letters (device_id) WHERE reprocessed_at IS NULL;

-- Per-patient "new data arrived" marks, for incremental analytics.
CREATE TABLE patient_activity (
    patient_id       bigint PRIMARY KEY REFERENCES patients(id),
    last_reading_at  timestamptz,
    last_ingest_at   timestamptz NOT NULL DEFAULT now()
);
