-- Disclosure grants, kept by intake itself from the referral events: the receiving
-- agency of a referral may be shown the child's identity while its grant is live
-- (opened, not ended). One row per referral; an ended row never reopens. A row with
-- no opened_at is a referral that ended before it was accepted (kept so a late event
-- cannot open it).
CREATE TABLE grants (
    referral_id  UUID PRIMARY KEY,
    case_id      UUID NOT NULL REFERENCES cases (case_id),
    agency_id    TEXT NOT NULL,        -- the referral's receiving agency
    version      INTEGER NOT NULL,     -- referral version of the last event applied
    opened_at    TIMESTAMPTZ,
    ended_at     TIMESTAMPTZ,
    end_reason   TEXT CHECK (end_reason IN ('closed', 'cancelled', 'rejected', 'consent_withdrawn')),
    CHECK ((ended_at IS NULL) = (end_reason IS NULL)),
    CHECK (opened_at IS NOT NULL OR ended_at IS NOT NULL)
);
CREATE INDEX grants_live ON grants (case_id, agency_id) WHERE ended_at IS NULL;
