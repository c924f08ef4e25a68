-- Identity for the API: users and roles, clinician panels, refresh tokens, enrolment
-- codes, gateway service principals, and the append-only audit log.
--
-- Secrets are never stored: passwords and gateway secrets as argon2id hashes, refresh
-- tokens and one-time codes as SHA-256 digests (they are high-entropy random strings).

CREATE TABLE users (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username       text NOT NULL,
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('patient', 'clinician', 'admin')),
    patient_id     bigint UNIQUE REFERENCES patients(id),   -- the patient's own record
    display_name   text,
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'patient') = (patient_id IS NOT NULL))
);
CREATE UNIQUE INDEX users_username_ci ON users (lower(username));

-- Which patients a clinician may see.
CREATE TABLE clinician_panel (
    clinician_id  bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    patient_id    bigint NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    added_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (clinician_id, patient_id)
);
CREATE INDEX clinician_panel_patient ON clinician_panel (patient_id);

-- Refresh tokens rotate on every use; a token of a family presented after it was
-- rotated (a replay) revokes the whole family.
CREATE TABLE refresh_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE,
    family      uuid NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    rotated_at  timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);

-- Patient portal activation (single use, expiring).
CREATE TABLE activation_codes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id  bigint NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    code_hash   bytea NOT NULL UNIQUE,
    created_by  bigint REFERENCES users(id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    used_by     bigint REFERENCES users(id) ON DELETE SET NULL
);
CREATE INDEX activation_codes_patient ON activation_codes (patient_id);

-- Gateway enrolment codes: typed into (or scanned by) the home gateway at set-up.
CREATE TABLE gateway_enrollment_codes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id  bigint NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    code_hash   bytea NOT NULL UNIQUE,
    created_by  bigint REFERENCES users(id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    gateway_id  text
);

-- Gateways as service principals (username = gateway id, as on MQTT).
CREATE TABLE gateway_credentials (
    gateway_id   text PRIMARY KEY REFERENCES gateways(id) ON DELETE CASCADE,
    secret_hash  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

-- Who read or changed what, about whom, when, from where.  Append-only: the owner's
-- UPDATE/DELETE/TRUNCATE privileges are revoked and a trigger rejects them anyway.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor       text NOT NULL,
    actor_id    bigint,
    role        text NOT NULL,
    action      text NOT NULL,
    patient_id  bigint,
    resource    text,
    client_ip   text,
    status      smallint,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_patient ON audit_log (patient_id, at DESC);
CREATE INDEX audit_log_actor ON audit_log (actor, at DESC);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% rejected)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM CURRENT_USER;
