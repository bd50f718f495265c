-- The same content under another event id (a producer that minted a new id for a
-- retry, a replay) is the same event: it must not tell anyone twice.
ALTER TABLE source_events ADD COLUMN content_key TEXT;
CREATE UNIQUE INDEX source_events_content ON source_events (content_key);

-- The newest version of each referral notifications has seen: an older one that
-- arrives late (a replay) tells no one about a state the referral has left.
CREATE TABLE referral_versions (
    referral_id  UUID PRIMARY KEY,
    version      INT NOT NULL
);
