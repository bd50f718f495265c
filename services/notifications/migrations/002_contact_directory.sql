-- The contact directory as last fetched from the referral service, which owns it
-- (GET /internal/v1/contact-directory). Kept so that a restart while referral is
-- unreachable still knows whom to tell. Staff contact points only; one row.
CREATE TABLE contact_directory (
    singleton   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    version     BIGINT NOT NULL,
    document    JSONB NOT NULL,
    fetched_at  TIMESTAMPTZ NOT NULL
);
