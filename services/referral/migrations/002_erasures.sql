-- Cases intake erased (case.erased): the case's identifying details are gone from
-- this service too. One row per case, written in the transaction that removed them,
-- also for a case never seen here, so that a later case.created (a replay) cannot
-- bring it back. `removed` counts what went (no content): the operator's proof.
CREATE TABLE erasures (
    case_id     UUID PRIMARY KEY,
    reference   TEXT NOT NULL,
    reason      TEXT NOT NULL,           -- contracts.codes.ErasureReason
    erased_at   TIMESTAMPTZ NOT NULL,    -- when intake erased the case
    applied_at  TIMESTAMPTZ NOT NULL,    -- when this service applied it
    removed     JSONB NOT NULL           -- e.g. {"referrals_cancelled": 2, "profile": 1}
);
