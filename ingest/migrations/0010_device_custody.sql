-- Device custody (issue #14): a device belongs to one patient at a time through one hub.
--
-- The hub holding a device is devices.gateway_id (NULL: none — released by its hub's
-- unpair, or a bulk-import source); its patient is the open device_bindings row.  Only
-- ingest/custody.py changes either for a hub's event; a pairing from elsewhere becomes a
-- custody request that a clinician approves or rejects.

-- The hub that held the device last, until when: its readings measured before it lost
-- custody (an unpair, or a clinician's move) may still arrive after, and are its own.
ALTER TABLE devices
    ADD COLUMN former_gateway_id text,
    ADD COLUMN custody_ended_at  timestamptz;

-- The device's timeline: what hubs and people did to it, including what was refused.
-- Append-only, like audit_log: it is the audit of ingest-side custody decisions.
CREATE TABLE device_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id    text NOT NULL,
    at           timestamptz NOT NULL,            -- when it happened (a hub's event time)
    recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    gateway_id   text,                            -- the hub it came from; NULL: a person
    actor        text NOT NULL,                   -- 'ingest' or the user who decided
    action       text NOT NULL,                   -- custody.taken / .held / .approved / ...
    detail       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX device_events_device ON device_events (device_id, id DESC);

CREATE FUNCTION device_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'device_events is append-only (% rejected)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER device_events_no_update BEFORE UPDATE OR DELETE ON device_events
    FOR EACH ROW EXECUTE FUNCTION device_events_append_only();
CREATE TRIGGER device_events_no_truncate BEFORE TRUNCATE ON device_events
    FOR EACH STATEMENT EXECUTE FUNCTION device_events_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON device_events FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE ON device_events FROM CURRENT_USER;

-- A hub's pairing (or inventory) of a device held elsewhere, waiting for a clinician.
-- Never applied by ingest; approve moves the device, reject leaves it where it is.
CREATE TABLE custody_requests (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id      text NOT NULL,                 -- no FK: the demo's reset deletes devices
    from_gateway   text,                          -- the custodian when it was held
    from_patient   bigint REFERENCES patients(id),
    to_gateway     text NOT NULL,                 -- the hub asking
    to_patient     bigint REFERENCES patients(id),
    event          text NOT NULL CHECK (event IN ('paired', 'inventory')),
    requested_at   timestamptz NOT NULL,          -- the event's time (the hub's clock)
    received_at    timestamptz NOT NULL DEFAULT now(),
    device_info    jsonb NOT NULL DEFAULT '{}',   -- profile, name, ... as the hub sent them
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'approved', 'rejected')),
    decided_by     text,
    decided_by_id  bigint,
    decided_at     timestamptz,
    decided_from   text,                          -- client IP of the decision
    reason         text,
    moved_at       timestamptz,                   -- approved: the old binding ends here
    CHECK ((status = 'pending') = (decided_at IS NULL))
);
-- One pending request per device and asking hub: redeliveries and retries add nothing.
CREATE UNIQUE INDEX custody_requests_one_pending ON custody_requests (device_id, to_gateway)
    WHERE status = 'pending';
CREATE INDEX custody_requests_queue ON custody_requests (status, received_at DESC);
