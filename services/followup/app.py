"""Follow-up service wiring: settings, runtime (subscribers, timer loop, report
metrics), API."""

from datetime import timedelta
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI
from pydantic import Field, field_validator

from contracts.codes import RiskLevel
from services.followup import domain
from services.followup.api import build_router
from services.followup.handlers import Handlers
from services.followup.metrics import FollowupMetrics
from services.followup.timers import TimerLoop
from services.kit.clock import Clock, SystemClock
from services.kit.http import (
    AgencyRegistry,
    agency_dependency,
)
from services.kit.logging import get_logger
from services.kit.runtime import ServiceRuntime, serve, service_app
from services.kit.settings import ServiceSettings

MIGRATIONS = Path(__file__).parent / "migrations"
log = get_logger(__name__)

Hours = Annotated[float, Field(gt=0)]


def _hours(critical: float, high: float, medium: float, low: float) -> dict[RiskLevel, float]:
    return {
        RiskLevel.CRITICAL: critical,
        RiskLevel.HIGH: high,
        RiskLevel.MEDIUM: medium,
        RiskLevel.LOW: low,
    }


class FollowupSettings(ServiceSettings):
    """Deadlines are hours per urgency; set them as JSON, e.g.
    ENLACE_DECIDE_WITHIN_HOURS='{"critical": 4, "high": 24, "medium": 72, "low": 168}'.

    The time to acknowledge is not set here: it is the referral service's promise
    (`respond_by` on referral.sent, from its ENLACE_RESPOND_WITHIN_*_HOURS)."""

    service_name: str = "followup"
    http_port: int = 8003

    decide_within_hours: dict[RiskLevel, Hours] = Field(
        default_factory=lambda: _hours(4, 24, 72, 168),
        description="Counted from the acknowledgement",
    )
    start_service_within_hours: dict[RiskLevel, Hours] = Field(
        default_factory=lambda: _hours(24, 72, 168, 336), description="Counted from the acceptance"
    )
    escalation_multiples: list[float] = Field(
        default_factory=lambda: [1.0, 2.0],
        description="Level n fires when multiple[n-1] x the deadline has passed",
    )
    post_closure_followup_days: float = Field(default=14, gt=0)
    reopened_followup_days: float = Field(default=7, gt=0)
    periodic_review_days: float = Field(default=7, gt=0)
    periodic_review_risk_levels: list[RiskLevel] = Field(
        default_factory=lambda: [RiskLevel.HIGH, RiskLevel.CRITICAL]
    )
    timer_batch_size: int = Field(default=500, ge=1, le=10_000)
    timer_poll_seconds: float = Field(default=1.0, gt=0)
    timer_concurrency: int = Field(default=2, ge=1, le=16)
    report_metrics_refresh_seconds: float = Field(default=30.0, gt=0)

    @field_validator("decide_within_hours", "start_service_within_hours")
    @classmethod
    def _every_urgency(cls, value: dict[RiskLevel, float]) -> dict[RiskLevel, float]:
        missing = set(RiskLevel) - set(value)
        if missing:
            raise ValueError(f"missing urgencies: {', '.join(sorted(missing))}")
        return value

    def policy(self) -> domain.DeadlinePolicy:
        def table(hours: dict[RiskLevel, float]) -> dict[RiskLevel, timedelta]:
            return {level: timedelta(hours=h) for level, h in hours.items()}

        return domain.DeadlinePolicy(
            decide=table(self.decide_within_hours),
            start_service=table(self.start_service_within_hours),
            escalation_multiples=tuple(self.escalation_multiples),
            post_closure_followup=timedelta(days=self.post_closure_followup_days),
            reopened_followup=timedelta(days=self.reopened_followup_days),
            periodic_review=timedelta(days=self.periodic_review_days),
            review_risk_levels=frozenset(self.periodic_review_risk_levels),
        )


def create_app(settings: FollowupSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or FollowupSettings()
    clock = clock or SystemClock()
    policy = settings.policy()  # invalid ladders fail here, at start-up

    # The workers use `timers` and `metrics`, built below once the runtime exists.
    async def timer_worker(runtime: ServiceRuntime) -> None:
        await timers.run(runtime.stopping, settings.timer_concurrency)

    async def report_metrics_worker(runtime: ServiceRuntime) -> None:
        while True:
            try:
                await metrics.refresh(runtime.pool, clock.now())
            except Exception as exc:  # a dashboard figure must never take the service down
                log.warning("report metrics refresh failed", error=exc.__class__.__name__)
            if await runtime.sleep(settings.report_metrics_refresh_seconds):
                return

    runtime = ServiceRuntime(
        settings,
        migrations=MIGRATIONS,
        subscriptions=Handlers(policy, clock).subscriptions(),
        workers=[timer_worker],
        optional_workers=[report_metrics_worker],
    )
    metrics = FollowupMetrics(runtime.metrics.registry)
    timers = TimerLoop(
        pool_of=lambda: runtime.pool,
        clock=clock,
        policy=policy,
        source=settings.event_source,
        batch_size=settings.timer_batch_size,
        poll_seconds=settings.timer_poll_seconds,
        fired_counter=metrics.timers_fired,
    )
    agencies = AgencyRegistry.load(settings.agencies_file)
    current_agency = agency_dependency(agencies, runtime.auth_throttle)

    app = service_app(
        runtime,
        title="Enlace follow-up",
        description="Durable referral deadlines, escalation, follow-up checks and "
        "closed-loop reports.",
    )
    app.state.timers = timers
    app.state.metrics = metrics
    app.state.clock = clock
    app.include_router(
        build_router(lambda: runtime.pool, clock, current_agency, policy, settings.event_source)
    )
    return app


def main() -> None:
    settings = FollowupSettings()
    serve("services.followup.app:create_app", settings)


if __name__ == "__main__":
    main()
