-- Dead letters as read from every .dlq topic (one row per DLQ record), with the
-- operator's decision on each: open, redriven or discarded.
CREATE TABLE dead_letters (
    topic              TEXT NOT NULL,            -- contract name of the .dlq topic
    partition          INT NOT NULL,
    "offset"           BIGINT NOT NULL,
    record_key         BYTEA,
    record_value       BYTEA,
    header_keys        TEXT[] NOT NULL,
    header_values      BYTEA[] NOT NULL,
    received_at        TIMESTAMPTZ NOT NULL,     -- the DLQ record's broker time
    error_type         TEXT NOT NULL,
    error_message      TEXT NOT NULL,
    attempts           INT,
    consumer_service   TEXT NOT NULL,
    consumer_group     TEXT NOT NULL,
    original_topic     TEXT NOT NULL,            -- contract name of the original topic
    original_partition INT,
    original_offset    BIGINT,
    event_id           TEXT,
    event_type         TEXT NOT NULL,
    event_source       TEXT,
    case_id            TEXT,
    case_reference     TEXT,
    status             TEXT NOT NULL DEFAULT 'open'
                       CHECK (status IN ('open', 'redriven', 'discarded')),
    status_at          TIMESTAMPTZ,
    status_by          TEXT,
    redrives           INT NOT NULL DEFAULT 0,
    PRIMARY KEY (topic, partition, "offset")
);
CREATE INDEX dead_letters_status ON dead_letters (status, received_at);

-- Every redrive and discard: who, when, which records, why. Append-only.
CREATE TABLE audit (
    id       BIGSERIAL PRIMARY KEY,
    at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    who      TEXT NOT NULL,
    action   TEXT NOT NULL CHECK (action IN ('redrive', 'discard')),
    reason   TEXT NOT NULL,
    forced   BOOLEAN NOT NULL DEFAULT false,
    records  JSONB NOT NULL               -- [{"topic", "partition", "offset", "event_id"}]
);

CREATE FUNCTION audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the operations audit is append-only';
END $$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_is_append_only();

-- Lag per consumer group, topic and partition, sampled every few seconds.
CREATE TABLE lag_samples (
    at         TIMESTAMPTZ NOT NULL,
    group_id   TEXT NOT NULL,
    topic      TEXT NOT NULL,                 -- contract name
    partition  INT NOT NULL,
    lag        BIGINT NOT NULL,
    PRIMARY KEY (group_id, topic, partition, at)
);
CREATE INDEX lag_samples_at ON lag_samples (at);

-- Referral health, projected from the events.
CREATE TABLE overdue_referrals (
    referral_id       UUID PRIMARY KEY,
    case_id           UUID NOT NULL,
    reference         TEXT NOT NULL,
    to_agency_id      TEXT NOT NULL,
    service_type      TEXT NOT NULL,
    deadline          TEXT NOT NULL,
    due_at            TIMESTAMPTZ NOT NULL,
    escalation_level  INT NOT NULL
);
-- Referrals that reached a terminal state: a late referral.overdue is ignored.
CREATE TABLE ended_referrals (
    referral_id  UUID PRIMARY KEY,
    state        TEXT NOT NULL,
    ended_at     TIMESTAMPTZ NOT NULL
);
CREATE TABLE unmet_needs (
    event_id      TEXT PRIMARY KEY,
    case_id       UUID NOT NULL,
    service_type  TEXT NOT NULL,
    country       TEXT NOT NULL,
    region        TEXT NOT NULL,
    reason        TEXT NOT NULL,
    occurred_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX unmet_needs_occurred ON unmet_needs (occurred_at);
CREATE TABLE notification_failures (
    event_id         TEXT PRIMARY KEY,
    case_id          UUID NOT NULL,
    notification_id  UUID NOT NULL,
    channel          TEXT NOT NULL,
    error_code       TEXT NOT NULL,
    permanent        BOOLEAN NOT NULL,
    failed_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX notification_failures_failed ON notification_failures (failed_at);
