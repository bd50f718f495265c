-- Transactional outbox: a state change and its event commit together; the relay
-- publishes rows in seq order and deletes them once the broker acknowledged them.
CREATE TABLE outbox (
    seq          BIGSERIAL PRIMARY KEY,
    topic        TEXT NOT NULL,          -- contract topic name; the relay applies the namespace
    event_id     TEXT NOT NULL UNIQUE,
    event_type   TEXT NOT NULL,
    source       TEXT NOT NULL,
    subject      TEXT NOT NULL,          -- case id: the record key
    event_time   TIMESTAMPTZ NOT NULL,
    dataschema   TEXT NOT NULL,
    traceparent  TEXT NOT NULL,
    data         BYTEA NOT NULL,         -- JSON, exactly as it goes on the wire
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Idempotent consumer: the event id is recorded in the same transaction as its effects.
CREATE TABLE processed_events (
    consumer      TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    outcome       TEXT NOT NULL DEFAULT 'applied' CHECK (outcome IN ('applied', 'dead_lettered')),
    error         TEXT,
    processed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);
