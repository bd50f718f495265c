-- One event may be written to several topics: a partner agency's feed carries the
-- event as it was published (same ce_id), and a referral between two agencies with
-- feeds goes to both. An event is unique per topic, not overall.
ALTER TABLE outbox DROP CONSTRAINT outbox_event_id_key;
ALTER TABLE outbox ADD CONSTRAINT outbox_topic_event_id_key UNIQUE (topic, event_id);
