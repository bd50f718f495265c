"""Prometheus metrics. One registry per service runtime, so several services can run
in one test process without colliding."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class KitMetrics:
    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"service": service}
        self.outbox_backlog = Gauge(
            "enlace_outbox_backlog",
            "Outbox rows not yet published",
            registry=self.registry,
        )
        self.outbox_oldest_age = Gauge(
            "enlace_outbox_oldest_age_seconds",
            "Age of the oldest outbox row not yet published (0 when the outbox is empty)",
            registry=self.registry,
        )
        self.events_published = Counter(
            "enlace_events_published",
            "Events published to Kafka by the outbox relay",
            ["topic", "type"],
            registry=self.registry,
        )
        self.publish_failures = Counter(
            "enlace_outbox_publish_failures",
            "Relay batches that failed and will be retried",
            registry=self.registry,
        )
        self.relay_batch_seconds = Histogram(
            "enlace_outbox_batch_seconds",
            "Time to publish one outbox batch",
            registry=self.registry,
        )
        self.relay_is_leader = Gauge(
            "enlace_outbox_relay_leader",
            "1 when this replica holds the relay lock",
            registry=self.registry,
        )
        self.events_consumed = Counter(
            "enlace_events_consumed",
            "Events consumed, by outcome (applied, duplicate, ignored, dead_lettered)",
            ["topic", "type", "outcome"],
            registry=self.registry,
        )
        self.handler_errors = Counter(
            "enlace_handler_errors",
            "Handler attempts that raised",
            ["topic", "type", "kind"],
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "enlace_dead_lettered",
            "Records sent to a dead-letter topic",
            ["topic"],
            registry=self.registry,
        )
        self.untrusted_events = Counter(
            "enlace_untrusted_events",
            "Records refused because their ce_source is not the declared producer of their "
            "type (dead-lettered, never applied)",
            ["topic", "type", "source"],
            registry=self.registry,
        )
        self.http_requests = Counter(
            "enlace_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "enlace_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
        )
        self.info = Gauge(
            "enlace_service_info", "Service identity", ["service"], registry=self.registry
        )
        self.info.labels(**labels).set(1)
