-- Clinical targets and the review queue.
CREATE TABLE patient_targets (
    patient_id  bigint PRIMARY KEY REFERENCES patients(id),
    category    text NOT NULL DEFAULT 'standard'
                CHECK (category IN ('standard', 'older_high_risk', 'pregnancy')),
    overrides   jsonb NOT NULL DEFAULT '{}',
    updated_by  text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE flags (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id       bigint NOT NULL REFERENCES patients(id),
    rule_id          text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('urgent', 'high', 'medium', 'low')),
    status           text NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'acknowledged', 'resolved')),
    summary          text NOT NULL,
    evidence         jsonb NOT NULL,
    evidence_from    timestamptz,
    evidence_to      timestamptz,
    condition_active boolean NOT NULL DEFAULT true,
    cleared_at       timestamptz,
    opened_at        timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    acknowledged_by  text,
    acknowledged_at  timestamptz,
    acknowledge_note text,
    resolved_by      text,
    resolved_at      timestamptz,
    resolve_note     text
);
-- One unresolved flag per patient and rule: new evidence updates it.
CREATE UNIQUE INDEX flags_one_unresolved ON flags (patient_id, rule_id) WHERE status <> 'resolved';
CREATE INDEX flags_queue ON flags (status, severity, opened_at DESC);

CREATE TABLE flag_events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    flag_id   bigint NOT NULL REFERENCES flags(id),
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,
    action    text NOT NULL,               -- raised / updated / cleared / acknowledged / resolved
    note      text,
    evidence  jsonb
);

CREATE TABLE analytics_state (
    key    text PRIMARY KEY,
    value  timestamptz NOT NULL
);
