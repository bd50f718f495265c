-- Referrals as seen on protection.referrals.v1: the newest version's state, plus the
-- milestone times the closed-loop report needs (recorded whatever order events arrive in).
CREATE TABLE referrals (
    referral_id         UUID PRIMARY KEY,
    case_id             UUID NOT NULL,
    reference           TEXT NOT NULL,
    state               TEXT NOT NULL,
    version             INTEGER NOT NULL,
    from_agency_id      TEXT NOT NULL,
    to_agency_id        TEXT NOT NULL,
    service_id          TEXT NOT NULL,
    service_type        TEXT NOT NULL,
    urgency             TEXT NOT NULL,
    case_country        TEXT NOT NULL,
    case_region         TEXT NOT NULL,
    service_country     TEXT NOT NULL,
    cross_border        BOOLEAN NOT NULL,
    sent_at             TIMESTAMPTZ,
    acknowledge_due_at  TIMESTAMPTZ,
    acknowledged_at     TIMESTAMPTZ,
    decided_at          TIMESTAMPTZ,
    service_started_at  TIMESTAMPTZ,
    closed_at           TIMESTAMPTZ,
    finished_at         TIMESTAMPTZ,
    outcome             TEXT,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX referrals_case ON referrals (case_id);
CREATE INDEX referrals_from_sent ON referrals (from_agency_id, sent_at);
CREATE INDEX referrals_to_sent ON referrals (to_agency_id, sent_at);
CREATE INDEX referrals_sent ON referrals (sent_at);

-- Cases as seen on protection.cases.v1 (risk, registering agency, caseworker).
CREATE TABLE cases (
    case_id                 UUID PRIMARY KEY,
    reference               TEXT NOT NULL,
    registering_agency_id   TEXT NOT NULL,
    region                  TEXT NOT NULL,
    risk_level              TEXT NOT NULL,
    caseworker_id           TEXT NOT NULL
);

-- Follow-up checks with a caseworker: after closure, periodic reviews, reopened ones.
CREATE TABLE followups (
    followup_id        UUID PRIMARY KEY,
    origin             TEXT NOT NULL UNIQUE,   -- what created it; makes creation idempotent
    kind               TEXT NOT NULL,
    case_id            UUID NOT NULL,
    reference          TEXT NOT NULL,
    referral_id        UUID,
    agency_id          TEXT NOT NULL,
    caseworker_id      TEXT,
    risk_level         TEXT NOT NULL,
    due_at             TIMESTAMPTZ NOT NULL,
    status             TEXT NOT NULL DEFAULT 'scheduled'
                       CHECK (status IN ('scheduled', 'due', 'completed')),
    child_reached      BOOLEAN,
    service_received   BOOLEAN,
    current_risk       TEXT,
    reopened_as        UUID,
    reopened_from      UUID,
    completed_at       TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX followups_agency ON followups (agency_id, status, due_at);

-- Durable timers. The loop claims due rows with FOR UPDATE SKIP LOCKED, so replicas
-- fire each one once. kind: deadline (a referral deadline, escalating level by level),
-- followup (one follow-up falls due), review (periodic review of a high-risk case).
CREATE TABLE timers (
    timer_id      UUID PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('deadline', 'followup', 'review')),
    case_id       UUID NOT NULL,
    referral_id   UUID,
    deadline      TEXT,                 -- DeadlineKind, for kind = deadline
    followup_id   UUID,                 -- for kind = followup
    started_at    TIMESTAMPTZ NOT NULL, -- when the clock started
    due_at        TIMESTAMPTZ NOT NULL, -- the deadline itself
    fire_at       TIMESTAMPTZ NOT NULL, -- next firing
    level         INTEGER NOT NULL DEFAULT 1,  -- escalation level the next firing emits
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'escalated', 'finished')),
    finished_by   TEXT,
    fired_count   INTEGER NOT NULL DEFAULT 0,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX timers_due ON timers (fire_at) WHERE status = 'pending';
-- One timer per referral deadline, ever: a late event cannot start a finished one again.
CREATE UNIQUE INDEX timers_one_per_deadline ON timers (referral_id, deadline) WHERE kind = 'deadline';
CREATE UNIQUE INDEX timers_one_per_followup ON timers (followup_id) WHERE kind = 'followup';
CREATE UNIQUE INDEX timers_one_review_per_case ON timers (case_id) WHERE kind = 'review';
