-- Cases as far as notifications needs them: whose they are and who works them
-- (from case.created). No child's details.
CREATE TABLE cases (
    case_id        UUID PRIMARY KEY,
    reference      TEXT NOT NULL,
    agency_id      TEXT NOT NULL,
    caseworker_id  TEXT NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The events that caused notifications: contract data only (codes, reference, deadlines).
CREATE TABLE source_events (
    event_id     TEXT PRIMARY KEY,
    event_type   TEXT NOT NULL,
    case_id      UUID NOT NULL,
    data         JSONB NOT NULL,
    traceparent  TEXT NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL
);

-- Events whose caseworker recipient is known only once case.created is seen.
CREATE TABLE awaiting_case (
    event_id  TEXT PRIMARY KEY REFERENCES source_events (event_id),
    case_id   UUID NOT NULL
);
CREATE INDEX awaiting_case_case ON awaiting_case (case_id);

-- One row per (event, recipient, channel), written before anything is sent: the
-- unique key is what makes a redelivered event send nothing. Message bodies are
-- never stored; they are rendered at send time.
CREATE TABLE deliveries (
    notification_id      UUID PRIMARY KEY,
    source_event_id      TEXT NOT NULL REFERENCES source_events (event_id),
    case_id              UUID NOT NULL,
    owner_agency_id      TEXT NOT NULL,      -- whose delivery log shows it
    recipient_id         TEXT NOT NULL,
    recipient_kind       TEXT NOT NULL CHECK (recipient_kind IN ('directory', 'caseworker')),
    recipient_agency_id  TEXT NOT NULL,
    recipient_ref        TEXT NOT NULL,      -- directory contact id, or staff id
    role                 TEXT NOT NULL,
    channel              TEXT NOT NULL CHECK (channel IN ('sms', 'email')),
    urgent               BOOLEAN NOT NULL,
    status               TEXT NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'sending', 'sent', 'delivered', 'failed',
                                           'undelivered')),
    attempts             INT NOT NULL DEFAULT 0,
    next_attempt_at      TIMESTAMPTZ NOT NULL,
    claim_token          UUID,
    lease_until          TIMESTAMPTZ,
    deferred_until       TIMESTAMPTZ,        -- set when quiet hours pushed it to the morning
    provider             TEXT,
    provider_message_id  TEXT,
    provider_status      TEXT,
    error_code           TEXT,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL,
    sent_at              TIMESTAMPTZ,
    UNIQUE (source_event_id, recipient_id, channel)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE status = 'sending';
CREATE INDEX deliveries_case ON deliveries (case_id);
CREATE INDEX deliveries_provider_message ON deliveries (provider_message_id)
    WHERE provider_message_id IS NOT NULL;

-- Every provider status callback, verified; applied to deliveries (also when it
-- arrives before the send was recorded).
CREATE TABLE sms_status_reports (
    id                   BIGSERIAL PRIMARY KEY,
    provider_message_id  TEXT NOT NULL,
    status               TEXT NOT NULL,
    error_code           TEXT,
    received_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX sms_status_reports_message ON sms_status_reports (provider_message_id);

-- Caseworker contacts fetched from intake's internal endpoint, cached.
CREATE TABLE caseworker_contacts (
    agency_id   TEXT NOT NULL,
    staff_id    TEXT NOT NULL,
    contact     JSONB NOT NULL,
    fetched_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (agency_id, staff_id)
);
