-- The webhook lane's claim takes, for each endpoint, its earliest due deliveries up to
-- what the endpoint may have in flight: one short index range per endpoint, however
-- long another endpoint's backlog is.
CREATE INDEX deliveries_endpoint_due ON deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending' AND endpoint_id IS NOT NULL;
