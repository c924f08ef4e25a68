-- Server-side revocation of access tokens and dashboard sessions (both are short-lived
-- JWTs; before this only refresh tokens could be revoked, so signing out or resetting
-- a password left them working until they expired).
--
-- * users.token_epoch: every person token carries the epoch it was issued under (claim
--   "gen"); a password reset, disabling the account or an operator's reset bumps it,
--   which ends every token and session of that user at once.  Exact, unlike comparing
--   a timestamp with the token's whole-second "iat".
-- * revoked_sessions: one ended session (the dashboard's session id, or the refresh
--   family an access token belongs to), kept until the last token of it has expired.
ALTER TABLE users ADD COLUMN token_epoch integer NOT NULL DEFAULT 0;

CREATE TABLE revoked_sessions (
    session_id  text PRIMARY KEY,
    user_id     bigint,
    revoked_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL   -- the row is useless after: deleted by the API
);
CREATE INDEX revoked_sessions_expires ON revoked_sessions (expires_at);
