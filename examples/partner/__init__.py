"""A partner agency's webhook receiver and feed-topic consumer (README, "Connect your
agency's system")."""
