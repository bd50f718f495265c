-- Cases intake erased (case.erased). One row per case, written in the transaction
-- that scrubbed the case's source events, dropped its parked events and cancelled
-- its pending deliveries; also for a case never seen here, so that a later
-- case.created (a replay) or a late event of the case plans nothing.
-- `removed` counts what went (no content).
CREATE TABLE erasures (
    case_id     UUID PRIMARY KEY,
    reference   TEXT NOT NULL,
    reason      TEXT NOT NULL,           -- contracts.codes.ErasureReason
    erased_at   TIMESTAMPTZ NOT NULL,    -- when intake erased the case
    applied_at  TIMESTAMPTZ NOT NULL,    -- when this service applied it
    removed     JSONB NOT NULL           -- e.g. {"source_events_scrubbed": 3, ...}
);

-- A delivery that will never be attempted: its case was erased (error_code
-- 'case_erased'). The row stays in the delivery log: who was to be told, how, when.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('pending', 'sending', 'sent', 'delivered', 'failed', 'undelivered',
                      'cancelled'));
