-- Cases as registered. Identifying details live only here, in `registration`,
-- and leave this database only through the audited internal disclosure call.
CREATE TABLE cases (
    case_id                UUID PRIMARY KEY,
    reference              TEXT NOT NULL UNIQUE,
    agency_id              TEXT NOT NULL,
    external_id            TEXT NOT NULL,
    country                TEXT NOT NULL,
    region                 TEXT NOT NULL,
    risk_level             TEXT NOT NULL,
    registration           JSONB NOT NULL,
    dedup_key              TEXT,
    possible_duplicate_of  UUID[] NOT NULL DEFAULT '{}',
    consent_status         TEXT NOT NULL DEFAULT 'active'
                           CHECK (consent_status IN ('active', 'withdrawn')),
    consent_withdrawn_at   TIMESTAMPTZ,
    registered_at          TIMESTAMPTZ NOT NULL,
    version                INTEGER NOT NULL DEFAULT 1,
    UNIQUE (agency_id, external_id)
);
CREATE INDEX cases_dedup_key ON cases (dedup_key) WHERE dedup_key IS NOT NULL;
CREATE INDEX cases_caseworker ON cases (agency_id, (registration->'caseworker'->>'id'), registered_at DESC);

-- Human reference codes: one counter per country-region-year.
CREATE TABLE reference_counters (
    prefix      TEXT PRIMARY KEY,
    last_value  BIGINT NOT NULL
);

-- Idempotency-Key replays: same key + same body = same case; same key + other body = 422.
CREATE TABLE idempotency_keys (
    agency_id     TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    case_id       UUID NOT NULL REFERENCES cases (case_id),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agency_id, key)
);

-- Append-only audit of every disclosure of identifying details.
CREATE TABLE disclosures (
    id             BIGSERIAL PRIMARY KEY,
    case_id        UUID NOT NULL REFERENCES cases (case_id),
    requested_by   TEXT NOT NULL,        -- internal principal (service)
    on_behalf_of   TEXT NOT NULL,        -- agency the details are disclosed to
    referral_id    UUID,
    purpose        TEXT NOT NULL,
    disclosed_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE RULE disclosures_no_update AS ON UPDATE TO disclosures DO INSTEAD NOTHING;
CREATE RULE disclosures_no_delete AS ON DELETE TO disclosures DO INSTEAD NOTHING;
