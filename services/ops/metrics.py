"""Operations' Prometheus metrics, on its own /metrics (the alert rules of
deploy/monitoring use these exact names). Refreshed by the sampler loop; each
refresh replaces the label sets, so a group or service that went away disappears."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from services.ops.domain import DLQ_TOPICS, OverdueCount, PartitionLag, ServiceHealth


class OpsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumer_lag = Gauge(
            "enlace_consumer_lag",
            "Messages a consumer group has not consumed yet (end offset - committed offset)",
            ["group", "topic", "partition"],
            registry=registry,
        )
        self.dead_letters = Gauge(
            "enlace_dead_letters",
            "Dead letters neither redriven nor discarded, per .dlq topic",
            ["topic"],
            registry=registry,
        )
        self.dead_letters_received = Gauge(
            "enlace_dead_letters_received",
            "Records ever written to the .dlq topic (sum of its end offsets): "
            "increase(...[1h]) is the dead letters of the last hour",
            ["topic"],
            registry=registry,
        )
        self.service_ready = Gauge(
            "enlace_service_ready",
            "1 when the service's /readyz answers ready, else 0",
            ["service"],
            registry=registry,
        )
        self.loop_up = Gauge(
            "enlace_loop_up",
            "1 when the service's background loop is running and not failing, else 0",
            ["service", "loop"],
            registry=registry,
        )
        self.overdue_referrals = Gauge(
            "enlace_overdue_referrals",
            "Referrals overdue and not ended, by escalation level and the agency late",
            ["level", "agency"],
            registry=registry,
        )

    def set_lag(self, rows: list[PartitionLag]) -> None:
        self.consumer_lag.clear()
        for r in rows:
            self.consumer_lag.labels(r.group, r.topic, str(r.partition)).set(r.lag)

    def set_dead_letters(self, open_counts: dict[str, int]) -> None:
        for topic in DLQ_TOPICS:
            self.dead_letters.labels(topic).set(open_counts.get(topic, 0))

    def set_received(self, ends: dict[tuple[str, int], int]) -> None:
        for topic in DLQ_TOPICS:
            total = sum(end for (t, _), end in ends.items() if t == topic)
            self.dead_letters_received.labels(topic).set(total)

    def set_services(self, services: list[ServiceHealth]) -> None:
        self.loop_up.clear()
        for s in services:
            self.service_ready.labels(s.service).set(1 if s.ready else 0)
            for name, loop in s.loops.items():
                self.loop_up.labels(s.service, name).set(1 if loop.status == "running" else 0)

    def set_overdue(self, counts: list[OverdueCount]) -> None:
        self.overdue_referrals.clear()
        for c in counts:
            self.overdue_referrals.labels(str(c.escalation_level), c.agency).set(c.referrals)
