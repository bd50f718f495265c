-- The codes of each routed case, copied from case.created (no identifiers). The row
-- is also the per-case lock: every write about a case locks it first, so the outbox
-- rows of one case commit in the order they were written.
CREATE TABLE cases (
    case_id                UUID PRIMARY KEY,
    reference              TEXT NOT NULL,
    registering_agency_id  TEXT NOT NULL,
    country                TEXT NOT NULL,
    region                 TEXT NOT NULL,
    profile                JSONB NOT NULL,     -- case.created data (codes only)
    consent_withdrawn_at   TIMESTAMPTZ,
    routed_at              TIMESTAMPTZ NOT NULL
);

CREATE TABLE referrals (
    referral_id          UUID PRIMARY KEY,
    case_id              UUID NOT NULL REFERENCES cases (case_id),
    reference            TEXT NOT NULL,
    from_agency_id       TEXT NOT NULL,
    to_agency_id         TEXT NOT NULL,
    service_id           TEXT NOT NULL,
    service_type         TEXT NOT NULL,
    urgency              TEXT NOT NULL,
    case_country         TEXT NOT NULL,
    case_region          TEXT NOT NULL,
    service_country      TEXT NOT NULL,
    state                TEXT NOT NULL,
    version              INTEGER NOT NULL DEFAULT 1,
    routing_rule         TEXT,                 -- null when made by hand
    mandatory            BOOLEAN NOT NULL,
    respond_by           TIMESTAMPTZ,
    rejection_reason     TEXT,
    closure_outcome      TEXT,
    cancellation_reason  TEXT,
    best_interest        JSONB,                -- documented decision (who, when, why), if any
    created_at           TIMESTAMPTZ NOT NULL,
    sent_at              TIMESTAMPTZ,          -- null while proposed: the receiver cannot see it
    updated_at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX referrals_case ON referrals (case_id);
CREATE INDEX referrals_incoming ON referrals (to_agency_id, created_at, referral_id) WHERE sent_at IS NOT NULL;
CREATE INDEX referrals_outgoing ON referrals (from_agency_id, created_at, referral_id);
-- One open referral per case and service.
CREATE UNIQUE INDEX referrals_one_open_per_service ON referrals (case_id, service_id)
    WHERE state IN ('proposed', 'sent', 'acknowledged', 'accepted', 'in_progress');

-- Append-only audit of every disclosure of identifying details to a receiving agency.
CREATE TABLE disclosures (
    id             BIGSERIAL PRIMARY KEY,
    referral_id    UUID NOT NULL REFERENCES referrals (referral_id),
    case_id        UUID NOT NULL,
    agency_id      TEXT NOT NULL,        -- who received the details
    fields         TEXT[] NOT NULL,      -- what was disclosed
    purpose        TEXT NOT NULL,
    disclosed_at   TIMESTAMPTZ NOT NULL  -- when
);
CREATE INDEX disclosures_referral ON disclosures (referral_id);
CREATE RULE disclosures_no_update AS ON UPDATE TO disclosures DO INSTEAD NOTHING;
CREATE RULE disclosures_no_delete AS ON DELETE TO disclosures DO INSTEAD NOTHING;

-- The service directory: seeded from deploy/directory.yaml, edited through the admin API.
CREATE TABLE directory_organizations (
    organization_id  TEXT PRIMARY KEY,
    position         INTEGER NOT NULL,
    document         JSONB NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Bumped on every edit, so every replica reloads its in-memory copy.
CREATE TABLE directory_version (
    singleton  BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    version    BIGINT NOT NULL
);
INSERT INTO directory_version (version) VALUES (1);
