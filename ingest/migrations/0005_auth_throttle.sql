-- Sign-in and registration attempt windows, shared by every API process: a limit kept
-- in one process's memory is multiplied by the number of workers and forgotten on
-- restart (api/core/throttle.py).
--
-- One row per (scope, key): the times of the attempts still inside the sliding window,
-- oldest first, never more than the limit.  The key (username + client IP, gateway id +
-- IP, ...) is stored as its SHA-256: bounded in size, and a password typed into the
-- username field is not kept.  Rows whose window has passed are deleted by the API.
CREATE TABLE auth_throttle (
    scope       text NOT NULL,
    key_hash    bytea NOT NULL,
    attempts    timestamptz[] NOT NULL,
    expires_at  timestamptz NOT NULL,   -- newest attempt + window: the row is dead after
    PRIMARY KEY (scope, key_hash)
);
CREATE INDEX auth_throttle_expires ON auth_throttle (expires_at);
