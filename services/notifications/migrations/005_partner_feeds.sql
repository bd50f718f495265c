-- Partner feeds: the webhook endpoints each agency manages (/v1/webhook-endpoints).
-- Their deliveries are rows of `deliveries` (channel 'webhook'), claimed, leased and
-- retried by the one delivery worker, like SMS and e-mail.
CREATE TABLE webhook_endpoints (
    endpoint_id                 UUID PRIMARY KEY,
    agency_id                   TEXT NOT NULL,
    url                         TEXT NOT NULL,
    description                 TEXT NOT NULL DEFAULT '',
    event_types                 TEXT[] NOT NULL,
    enabled                     BOOLEAN NOT NULL,
    -- why it is disabled: 'agency' (its agency turned it off), 'gone' (it answered
    -- 410), 'failing' (it failed for longer than the service allows)
    disabled_reason             TEXT,
    -- The signing secrets, sealed (AES-GCM under the service's webhook secrets key);
    -- during a rotation's overlap both are used to sign.
    secret                      BYTEA NOT NULL,
    previous_secret             BYTEA,
    previous_secret_expires_at  TIMESTAMPTZ,
    failing_since               TIMESTAMPTZ,   -- first failure since the last success
    paused_until                TIMESTAMPTZ,   -- it asked to back off (429, 502-504)
    created_at                  TIMESTAMPTZ NOT NULL,
    updated_at                  TIMESTAMPTZ NOT NULL
);
CREATE INDEX webhook_endpoints_agency ON webhook_endpoints (agency_id);

ALTER TABLE deliveries ADD COLUMN endpoint_id UUID;
ALTER TABLE deliveries ADD COLUMN response_status INT;
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, created_at)
    WHERE endpoint_id IS NOT NULL;

ALTER TABLE deliveries DROP CONSTRAINT deliveries_channel_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_channel_check
    CHECK (channel IN ('sms', 'email', 'webhook'));
ALTER TABLE deliveries DROP CONSTRAINT deliveries_recipient_kind_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_recipient_kind_check
    CHECK (recipient_kind IN ('directory', 'caseworker', 'endpoint'));
-- 'held': a webhook delivery whose endpoint is disabled, sent once it is enabled again.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('pending', 'sending', 'sent', 'delivered', 'failed', 'undelivered',
                      'cancelled', 'held'));

-- What a partner receives is the event itself (CloudEvents structured JSON): its
-- source and time as published. NULL for events kept before partner feeds existed.
ALTER TABLE source_events ADD COLUMN source TEXT;
ALTER TABLE source_events ADD COLUMN occurred_at TIMESTAMPTZ;

-- A notice about an endpoint (disabled) to its agency's focal point is a delivery
-- like any other, about no case.
ALTER TABLE source_events ALTER COLUMN case_id DROP NOT NULL;
ALTER TABLE deliveries ALTER COLUMN case_id DROP NOT NULL;
