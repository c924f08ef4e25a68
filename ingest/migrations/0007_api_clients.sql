-- SMART Backend Services clients: EHR integrations that sign in with the OAuth2
-- client-credentials grant (api/smart/).  A client reads FHIR only, within its SMART
-- system scopes, and only the patients on one clinician's panel (panel_of): the grant
-- follows that panel as it changes, and ends when the clinician is disabled.
--
-- The secret is stored as an argon2id hash, like passwords and gateway secrets.
CREATE TABLE api_clients (
    client_id    text PRIMARY KEY CHECK (client_id ~ '^[A-Za-z0-9._-]{3,64}$'),
    secret_hash  text NOT NULL,
    scopes       text[] NOT NULL,   -- canonical SMART v2 system scopes, e.g. system/Observation.rs
    panel_of     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX api_clients_panel_of ON api_clients (panel_of);
