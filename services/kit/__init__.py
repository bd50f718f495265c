"""What every Enlace service shares, written once: settings, logging, database and
migrations, the transactional outbox and its relay, the idempotent consumer, Kafka
wiring, agency authentication, problem responses, health and metrics."""
