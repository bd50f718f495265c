"""The delivery worker's claim loop, for every channel (SMS, e-mail, partner
webhooks): claims due delivery rows (FOR UPDATE SKIP LOCKED, with a lease so a
crashed sender's rows come back), runs one attempt per row (`sending`,
`webhook_sending`) and records each outcome with its event (`outcomes`). Woken by
NOTIFY from the handlers, with a poll as the safety net. Retries are rows with a
later next_attempt_at, so they survive restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from services.kit.backoff import Backoff, pause, until_done
from services.kit.clock import Clock
from services.kit.logging import get_logger
from services.kit.runtime import ServiceRuntime
from services.kit.supervision import loop_health
from services.kit.transient import is_transient
from services.notifications import store
from services.notifications.outcomes import OutcomeRecorder
from services.notifications.sending import DeliveryMetrics, Sender
from services.notifications.store import OutcomeKind
from services.notifications.webhook_sending import WebhookSender

log = get_logger(__name__)


@dataclass(frozen=True)
class ClaimPolicy:
    lane: store.Lane
    lease_seconds: float
    max_in_flight: int
    poll_seconds: float
    per_endpoint: int = 0  # webhooks: at most this many in flight per endpoint


class DeliveryWorker:
    def __init__(
        self,
        *,
        policy: ClaimPolicy,
        clock: Clock,
        sender: Sender,
        webhooks: WebhookSender,
        recorder: OutcomeRecorder,
        metrics: DeliveryMetrics,
        dsn: str,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.sender = sender
        self.webhooks = webhooks
        self.recorder = recorder
        self.metrics = metrics
        self.dsn = dsn
        self._wake = asyncio.Event()

    async def run(self, runtime: ServiceRuntime) -> None:
        listener = await self._listen()
        in_flight: set[asyncio.Task[None]] = set()
        backoff = Backoff(0.2, 5.0)
        try:
            while not runtime.stopping.is_set():
                capacity = self.policy.max_in_flight - len(in_flight)
                if in_flight and capacity < max(1, self.policy.max_in_flight // 4):
                    # claim in batches, not one row per finished send
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                claimed: list[store.Claimed | store.WebhookClaim] = []
                if capacity > 0:
                    now = self.clock.now()
                    try:
                        claimed = await store.claim_due(
                            runtime.pool,
                            lane=self.policy.lane,
                            per_endpoint=self.policy.per_endpoint,
                            now=now,
                            limit=capacity,
                            lease_until=now + timedelta(seconds=self.policy.lease_seconds),
                        )
                    except Exception as exc:
                        if not is_transient(exc):
                            raise  # the supervisor logs it and starts the loop again
                        loop_health().failing(
                            f"claiming {self.policy.lane}: {exc.__class__.__name__}"
                        )
                        log.warning("claiming deliveries failed", error=exc.__class__.__name__)
                        if await runtime.sleep(backoff.next_delay()):
                            break
                        continue
                    backoff.reset()
                    loop_health().ok()
                    if listener is None or listener.is_closed():
                        listener = await self._listen()  # the database came back
                for item in claimed:
                    task = asyncio.create_task(self._deliver(item, runtime.stopping))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                if claimed and len(claimed) == capacity:
                    continue  # more may be due: claim again as soon as there is room
                await self._idle(in_flight, runtime.stopping)
                self._wake.clear()
        finally:
            if in_flight:  # finish what was started; unfinished rows come back by lease
                await asyncio.wait(in_flight, timeout=runtime.settings.shutdown_grace_seconds)
            if listener is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(listener.close(), timeout=2)

    async def _idle(self, in_flight: set[asyncio.Task[None]], stopping: asyncio.Event) -> None:
        """Until NOTIFY says something is due, or the poll. With a limit per endpoint,
        also until a send finishes: deliveries may be due that only its endpoint's
        limit held back, and that send just made room for them."""
        waiting = pause(self.policy.poll_seconds, self._wake, stopping)
        if not (self.policy.per_endpoint and in_flight):
            await waiting
            return
        # Room for a few, not one: a claim per finished send would cost more than it
        # sends.
        enough = len(in_flight) - max(1, self.policy.per_endpoint // 4)
        waiter = asyncio.ensure_future(waiting)
        try:
            while not waiter.done() and in_flight and len(in_flight) > enough:
                await asyncio.wait({waiter, *in_flight}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter

    async def _listen(self) -> asyncpg.Connection | None:
        """NOTIFY from the handlers wakes the worker; the poll is the safety net."""
        try:
            conn: asyncpg.Connection = await asyncpg.connect(self.dsn)
            await conn.add_listener(store.DUE_CHANNEL, lambda *_: self._wake.set())
            return conn
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("no NOTIFY listener; polling only", error=exc.__class__.__name__)
            return None

    async def _deliver(
        self, item: store.Claimed | store.WebhookClaim, stopping: asyncio.Event
    ) -> None:
        if isinstance(item, store.WebhookClaim):
            outcome = await self.webhooks.attempt(item)
        else:
            outcome = await self.sender.attempt(item)
        # An outcome is never forgotten while its claim holds: the database being away
        # is waited out. Past most of the lease (or when stopping) the row comes back
        # by lease instead, and the next claim reconciles with the provider first.
        give_up_at = time.monotonic() + self.policy.lease_seconds * 0.75

        def on_error(exc: Exception) -> None:
            log.warning(
                "recording a delivery outcome failed",
                error=exc.__class__.__name__,
                notification_id=str(item.notification_id),
            )
            if not is_transient(exc) or time.monotonic() > give_up_at:
                raise exc

        try:
            await until_done(
                lambda: self.recorder.record(outcome),
                backoff=Backoff(0.2, 5.0),
                stopping=stopping,
                on_error=on_error,
            )
        except Exception:  # the row keeps its lease and comes back after it
            return
        self.metrics.outcomes.labels(item.channel_name, outcome.kind.value).inc()
        if outcome.kind is OutcomeKind.RETRY:
            log.info(
                "delivery will be retried",
                notification_id=str(item.notification_id),
                error=outcome.error_code,
                attempts=item.attempts,
            )
        elif outcome.kind is OutcomeKind.FAILED:
            log.warning(
                "delivery failed",
                notification_id=str(item.notification_id),
                error=outcome.error_code,
                permanent=outcome.permanent,
                attempts=item.attempts,
            )
