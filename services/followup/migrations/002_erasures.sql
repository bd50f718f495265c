-- Cases intake erased (case.erased). One row per case, written in the transaction
-- that ended its timers and follow-up checks and dropped its case projection; also
-- for a case never seen here, so that a later case.created (a replay) or a late
-- referral event cannot start anything for it again. `removed` counts what went.
CREATE TABLE erasures (
    case_id     UUID PRIMARY KEY,
    reference   TEXT NOT NULL,
    reason      TEXT NOT NULL,           -- contracts.codes.ErasureReason
    erased_at   TIMESTAMPTZ NOT NULL,    -- when intake erased the case
    applied_at  TIMESTAMPTZ NOT NULL,    -- when this service applied it
    removed     JSONB NOT NULL           -- e.g. {"timers_finished": 2, "followups_cancelled": 1}
);

-- A follow-up check that will never be done: its case was erased. The row stays
-- (who, when, which referral) with why it ended.
ALTER TABLE followups DROP CONSTRAINT followups_status_check;
ALTER TABLE followups ADD CONSTRAINT followups_status_check
    CHECK (status IN ('scheduled', 'due', 'completed', 'cancelled'));
ALTER TABLE followups ADD COLUMN cancelled_reason TEXT;  -- 'erased'
