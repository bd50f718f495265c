"""Property-based HTTP fuzzing of the four services (schemathesis), as processes on the
real Kafka and PostgreSQL."""
