-- Children's identities at rest: sealed per case (services/intake/sealing.py), the
-- case's data key stored only wrapped by a key-encryption key, erasable for good.

-- `registration` keeps only what names no child (external id, codes, caseworker);
-- `sealed` the identifying fields, each AES-256-GCM under the case's data key.
-- Cases registered before this migration are sealed at the next start (a row with
-- `sealed IS NULL` and not erased is one of them).
ALTER TABLE cases
    ADD COLUMN sealed          JSONB,
    ADD COLUMN data_key_version SMALLINT,
    ADD COLUMN erased_at       TIMESTAMPTZ;

-- One data key per case, wrapped (AES-256-GCM, bound to the case) by the KEK named
-- in kek_version ("file:3", "pkcs11:2"). Erasure deletes the row: nothing can open
-- the case's sealed fields again.
CREATE TABLE case_keys (
    case_id      UUID PRIMARY KEY REFERENCES cases (case_id),
    kek_version  TEXT NOT NULL,
    wrapped      BYTEA NOT NULL,
    wrapped_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX case_keys_by_kek ON case_keys (kek_version);

-- Append-only audit of erasures: who, when, why (no identifying detail).
CREATE TABLE erasures (
    case_id        UUID PRIMARY KEY REFERENCES cases (case_id),
    reason         TEXT NOT NULL,
    requested_by   TEXT NOT NULL,        -- agency, operations principal, or "retention"
    requester_role TEXT NOT NULL CHECK (requester_role IN ('agency', 'operations', 'retention')),
    basis          TEXT,                 -- operations: the documented basis (a reference)
    erased_at      TIMESTAMPTZ NOT NULL
);
CREATE RULE erasures_no_update AS ON UPDATE TO erasures DO INSTEAD NOTHING;
CREATE RULE erasures_no_delete AS ON DELETE TO erasures DO INSTEAD NOTHING;

ALTER TABLE grants DROP CONSTRAINT grants_end_reason_check;
ALTER TABLE grants ADD CONSTRAINT grants_end_reason_check
    CHECK (end_reason IN ('closed', 'cancelled', 'rejected', 'consent_withdrawn', 'erased'));

-- Every referral of a case and whether it ended, from the referral events: retention
-- erases a case once all its referrals ended long enough ago.
CREATE TABLE case_referrals (
    referral_id  UUID PRIMARY KEY,
    case_id      UUID NOT NULL REFERENCES cases (case_id),
    version      INTEGER NOT NULL,
    ended_at     TIMESTAMPTZ             -- null while the referral is open
);
CREATE INDEX case_referrals_open ON case_referrals (case_id) WHERE ended_at IS NULL;
-- Cases registered before this migration: intake did not track their referrals, so
-- retention cannot tell whether one is still open and leaves them alone (README,
-- "Retention"); every case registered from now on is tracked from its first event.
ALTER TABLE cases ADD COLUMN referrals_tracked BOOLEAN;
UPDATE cases SET referrals_tracked = false;
ALTER TABLE cases ALTER COLUMN referrals_tracked SET DEFAULT true,
                  ALTER COLUMN referrals_tracked SET NOT NULL;
CREATE INDEX cases_retention ON cases (registered_at) WHERE erased_at IS NULL;
