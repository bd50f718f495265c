"""One webhook delivery attempt: the event as CloudEvents structured JSON, signed the
Standard Webhooks way with the endpoint's secret (and the previous one during a
rotation's overlap), posted once. Every way it can end is an `Outcome`, recorded by
the same recorder as messages; what the answer says about the endpoint (healthy,
failing, paused, gone) rides on the outcome and is applied with it.

webhook-id is `msg_<delivery id>`: the same for every attempt and redelivery of
one event to one endpoint, so the receiver can use it as its idempotency key."""

from __future__ import annotations

import random
import time as monotonic_time
from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

from prometheus_client import CollectorRegistry, Histogram

from contracts.envelope import CloudEvent
from contracts.registry import producer_source
from services.kit.backoff import Jitter, scheduled_delay
from services.kit.clock import Clock
from services.kit.logging import get_logger
from services.notifications import store
from services.notifications.channels import TransientSendError
from services.notifications.channels.webhook import WebhookClient, signed_headers
from services.notifications.domain.partners import Answer, answer_for, pause_for, url_problem
from services.notifications.endpoint_secrets import SecretBox
from services.notifications.store import Outcome, OutcomeKind, WebhookClaim

log = get_logger(__name__)


def webhook_id(notification_id: UUID) -> str:
    return f"msg_{notification_id.hex}"


def event_of(item: WebhookClaim) -> CloudEvent:
    """The event as it was published: its id, type, producer, time and data."""
    return CloudEvent(
        type=item.event_type,
        source=item.source or producer_source(item.event_type),
        subject=str(item.case_id),
        data=item.source_data,
        id=item.source_event_id,
        time=item.occurred_at or item.created_at,
        traceparent=item.traceparent,
    )


class WebhookSender:
    def __init__(
        self,
        *,
        client: WebhookClient,
        secrets: SecretBox,
        clock: Clock,
        schedule: tuple[float, ...],
        public_only: bool,
        registry: CollectorRegistry,
        jitter: Jitter = random.uniform,
        wall_clock: Callable[[], float] = monotonic_time.time,
    ) -> None:
        self.client = client
        self.secrets = secrets
        self.clock = clock
        self.schedule = schedule
        self.public_only = public_only
        self._jitter = jitter
        # The signature's timestamp is compared with the receiver's own clock: always
        # the real time, whatever clock schedules the retries.
        self._wall_clock = wall_clock
        self.latency = Histogram(
            "enlace_webhook_seconds",
            "Time a partner endpoint took to answer a delivery",
            registry=registry,
        )

    async def attempt(self, item: WebhookClaim) -> Outcome:
        """Try once; never raises."""
        if item.source_data.get(store.ERASED_MARK):
            return Outcome(item, OutcomeKind.FAILED, error_code="case_erased", permanent=True)
        if item.url is None or item.secret is None:
            return Outcome(item, OutcomeKind.FAILED, error_code="endpoint_deleted", permanent=True)
        if not item.enabled:  # disabled since it was claimed: held with the others
            return Outcome(item, OutcomeKind.DEFER, at=self.clock.now())
        problem = url_problem(item.url, public_https_only=self.public_only)
        if problem is not None:
            return self._again(item, "url_refused")
        try:
            headers = signed_headers(
                webhook_id(item.notification_id),
                int(self._wall_clock()),
                body := event_of(item).structured(),
                self._secrets_in_use(item),
            )
            started = monotonic_time.perf_counter()
            answer = await self.client.post(item.url, body, headers)
            self.latency.observe(monotonic_time.perf_counter() - started)
        except TransientSendError as exc:
            return self._again(item, exc.code)
        except Exception as exc:  # a bug must not lose the delivery: retry, then fail
            log.exception("webhook delivery crashed", notification_id=str(item.notification_id))
            return self._again(item, f"internal_{exc.__class__.__name__.lower()}"[:60])
        status = answer.status
        match answer_for(status):
            case Answer.DELIVERED:
                return Outcome(item, OutcomeKind.SENT, provider="webhook", response_status=status)
            case Answer.GONE:
                return Outcome(
                    item,
                    OutcomeKind.FAILED,
                    error_code="http_410",
                    permanent=True,
                    response_status=status,
                )
            case Answer.BACK_OFF:
                outcome = self._again(item, f"http_{status}", status)
                wait = (outcome.at - self.clock.now()).total_seconds() if outcome.at else 0.0
                until = self.clock.now() + timedelta(seconds=pause_for(answer.retry_after, wait))
                at = max(outcome.at, until) if outcome.at else None
                return Outcome(
                    item,
                    outcome.kind,
                    at=at,
                    error_code=outcome.error_code,
                    response_status=status,
                    pause_until=until,
                )
            case _:
                return self._again(item, f"http_{status}", status)

    def _secrets_in_use(self, item: WebhookClaim) -> list[str]:
        assert item.secret is not None
        in_use = [self.secrets.open(item.endpoint_id, item.secret)]
        expires = item.previous_secret_expires_at
        if item.previous_secret is not None and expires is not None and expires > self.clock.now():
            in_use.append(self.secrets.open(item.endpoint_id, item.previous_secret))
        return in_use

    def _again(self, item: WebhookClaim, code: str, status: int | None = None) -> Outcome:
        """The next attempt on the Standard Webhooks schedule, or failed once spent."""
        delay = scheduled_delay(item.attempts, self.schedule, rng=self._jitter)
        if delay is None:
            return Outcome(item, OutcomeKind.FAILED, error_code=code, response_status=status)
        at: datetime = self.clock.now() + timedelta(seconds=delay)
        return Outcome(item, OutcomeKind.RETRY, at=at, error_code=code, response_status=status)
