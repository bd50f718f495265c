"""The closed-loop report as Prometheus metrics, for dashboards.

A background refresh computes the operations-wide report (all time, by service type
and region) with the same code as `GET /v1/reports/referrals`, and a collector
exposes the last snapshot: gauges for the counts and percentiles, histograms for the
time to acknowledge and to close.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from services.followup import domain, store

HOURS_BUCKETS = (1, 4, 8, 24, 72, 168, 336, 720)
_COUNTS = (
    "sent",
    "acknowledged",
    "acknowledged_in_time",
    "overdue_now",
    "closed",
    "closed_with_service_provided",
)
LABELS = ["service_type", "region"]


@dataclass
class _Group:
    figures: dict[str, object]
    ack_hours: list[float]
    close_hours: list[float]


@dataclass
class Snapshot:
    groups: dict[tuple[str, str], _Group] = field(default_factory=dict)
    taken_at: datetime | None = None


def snapshot_from(referrals: list[domain.TrackedReferral], now: datetime) -> Snapshot:
    by_group: dict[tuple[str, str], list[domain.TrackedReferral]] = {}
    for f in referrals:
        by_group.setdefault((f.service_type, f.region), []).append(f)
    groups = {
        key: _Group(
            domain.figures(rows, None),
            [h for r in rows if (h := r.hours_to_acknowledge) is not None],
            [h for r in rows if (h := r.hours_to_close) is not None],
        )
        for key, rows in by_group.items()
    }
    return Snapshot(groups, now)


def _histogram(
    name: str, doc: str, snapshot: Snapshot, pick: Callable[[_Group], list[float]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=LABELS)
    for key, group in sorted(snapshot.groups.items()):
        values = pick(group)
        buckets = [
            (str(float(b * 3600)), float(sum(1 for v in values if v <= b))) for b in HOURS_BUCKETS
        ]
        buckets.append(("+Inf", float(len(values))))
        family.add_metric(list(key), buckets, sum_value=sum(values) * 3600)
    return family


class ReportCollector(Collector):
    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        for name in _COUNTS:
            gauge = GaugeMetricFamily(
                f"enlace_followup_referrals_{name}",
                f"Referrals: {name.replace('_', ' ')} (all time)",
                labels=LABELS,
            )
            for key, group in sorted(snapshot.groups.items()):
                value = group.figures[name]
                assert isinstance(value, int)
                gauge.add_metric(list(key), float(value))
            yield gauge
        for measure in ("acknowledge", "close"):
            quantiles = GaugeMetricFamily(
                f"enlace_followup_time_to_{measure}_quantile_seconds",
                f"Median and 90th percentile time from sending to {measure}",
                labels=[*LABELS, "quantile"],
            )
            for key, group in sorted(snapshot.groups.items()):
                hours = group.figures[f"hours_to_{measure}"]
                assert isinstance(hours, dict)
                for quantile, label in (("median", "0.5"), ("p90", "0.9")):
                    if hours[quantile] is not None:
                        quantiles.add_metric([*key, label], hours[quantile] * 3600)
            yield quantiles
        yield _histogram(
            "enlace_followup_time_to_acknowledge_seconds",
            "Time from sending a referral to its first response",
            snapshot,
            lambda g: g.ack_hours,
        )
        yield _histogram(
            "enlace_followup_time_to_close_seconds",
            "Time from sending a referral to its closure",
            snapshot,
            lambda g: g.close_hours,
        )


@dataclass
class FollowupMetrics:
    registry: CollectorRegistry
    report: ReportCollector = field(default_factory=ReportCollector)
    timers_fired: Counter = field(init=False)

    def __post_init__(self) -> None:
        self.registry.register(self.report)
        self.timers_fired = Counter(
            "enlace_followup_timers_fired",
            "Timers fired, by kind, subkind and escalation level",
            ["kind", "subkind", "level"],
            registry=self.registry,
        )

    async def refresh(self, pool: asyncpg.Pool, now: datetime) -> None:
        async with pool.acquire() as conn:
            referrals = await store.reports.tracked_referrals(
                conn,
                agency_id=None,
                period_from=None,
                period_to=None,
                service_type=None,
                region=None,
                now=now,
            )
        self.report.snapshot = snapshot_from(referrals, now)
