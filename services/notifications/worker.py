"""The delivery worker: claims due delivery rows (FOR UPDATE SKIP LOCKED, with a lease
so a crashed sender's rows come back), resolves the recipient, honours quiet hours,
renders in the recipient's language, waits for the provider's rate limit, sends, and
records the outcome with its notification.sent / notification.failed event in one
transaction. Retries are rows with a later next_attempt_at, so they survive restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time as monotonic_time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Protocol

import asyncpg
import httpx
from prometheus_client import Counter, Histogram

from contracts import events as ev
from contracts.codes import Channel
from contracts.envelope import new_traceparent, trace_id_of
from contracts.registry import model_for, to_cloud_event
from contracts.topics import Topic
from services.kit.clock import Clock
from services.kit.db import Conn
from services.kit.logging import get_logger
from services.kit.outbox import enqueue
from services.kit.runtime import ServiceRuntime
from services.notifications import store
from services.notifications.channels import PermanentSendError, TransientSendError
from services.notifications.channels.sms import SmsProvider
from services.notifications.domain import (
    Contact,
    Directory,
    Links,
    Renderer,
    Role,
    SmsTooLong,
    TokenBucket,
    language_for,
    message_context,
    quiet_hours_end,
    retry_delay,
)

log = get_logger(__name__)


class EmailSender(Protocol):
    name: str

    async def send(self, to: str, subject: str, body: str, *, message_id: str) -> str: ...


@dataclass(frozen=True)
class WorkerPolicy:
    max_attempts: int
    backoff_base_seconds: float
    backoff_cap_seconds: float
    quiet_start: time
    quiet_end: time
    quiet_channels: frozenset[Channel]
    default_language: str
    lease_seconds: float
    max_in_flight: int
    poll_seconds: float
    contact_cache_seconds: float


class ContactResolver:
    """Directory contacts from memory; caseworkers from intake's internal endpoint,
    cached in the database (a stale copy is used while intake is unreachable)."""

    def __init__(
        self,
        *,
        directory: Callable[[], Directory],
        intake: httpx.AsyncClient,
        api_key: str,
        pool: Callable[[], asyncpg.Pool],
        clock: Clock,
        cache_seconds: float,
    ) -> None:
        self._directory = directory
        self._intake = intake
        self._api_key = api_key
        self._pool = pool
        self._clock = clock
        self._cache_for = timedelta(seconds=cache_seconds)

    async def resolve(self, kind: str, agency_id: str, ref: str) -> Contact:
        if kind == "directory":
            contact = self._directory().contact(ref)
            if contact is None:
                raise PermanentSendError("unknown_recipient", "not in the directory")
            return contact
        cached = await store.cached_contact(self._pool(), agency_id, ref)
        if cached is not None and self._clock.now() - cached["fetched_at"] < self._cache_for:
            return _caseworker_contact(cached["contact"])
        try:
            response = await self._intake.get(
                f"/internal/v1/caseworkers/{agency_id}/{ref}",
                headers={"Authorization": f"Bearer {self._api_key}"},
            )
        except httpx.HTTPError as exc:
            if cached is not None:
                return _caseworker_contact(cached["contact"])
            raise TransientSendError("intake_unavailable", exc.__class__.__name__) from exc
        if response.status_code == 404:
            raise PermanentSendError("unknown_caseworker")
        if response.status_code != 200:
            if cached is not None:
                return _caseworker_contact(cached["contact"])
            raise TransientSendError(f"intake_http_{response.status_code}")
        payload: dict[str, Any] = response.json()
        await store.cache_contact(self._pool(), agency_id, ref, payload, self._clock.now())
        return _caseworker_contact(payload)


def _caseworker_contact(payload: dict[str, Any]) -> Contact:
    return Contact(
        id=str(payload.get("id", "")),
        name=str(payload.get("name") or ""),
        phone=payload.get("phone") or None,
        email=payload.get("email") or None,
        language=str(payload.get("language") or ""),
        time_zone=str(payload.get("time_zone") or "UTC"),
    )


class WorkerMetrics:
    def __init__(self, runtime: ServiceRuntime) -> None:
        registry = runtime.metrics.registry
        self.outcomes = Counter(
            "enlace_notification_outcomes",
            "Delivery attempts by outcome",
            ["channel", "outcome"],
            registry=registry,
        )
        self.send_seconds = Histogram(
            "enlace_notification_send_seconds",
            "Time the provider took to accept a message",
            ["channel"],
            registry=registry,
        )


class DeliveryWorker:
    def __init__(
        self,
        *,
        policy: WorkerPolicy,
        clock: Clock,
        directory: Callable[[], Directory],
        renderer: Renderer,
        links: Links,
        contacts: ContactResolver,
        sms: SmsProvider,
        email: EmailSender,
        rates: dict[Channel, TokenBucket],
        source: str,
        dsn: str,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.directory = directory
        self.renderer = renderer
        self.links = links
        self.contacts = contacts
        self.sms = sms
        self.email = email
        self.rates = rates
        self.source = source
        self.dsn = dsn
        self._wake = asyncio.Event()
        self._metrics: WorkerMetrics | None = None
        self._pool: asyncpg.Pool | None = None
        self._pending: list[tuple[store.Outcome, asyncio.Future[None]]] = []
        self._flushing = False

    # --- loop ------------------------------------------------------------------------------

    async def run(self, runtime: ServiceRuntime) -> None:
        self._pool = runtime.pool
        self._metrics = WorkerMetrics(runtime)
        listener = await self._listen()
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while not runtime.stopping.is_set():
                capacity = self.policy.max_in_flight - len(in_flight)
                if in_flight and capacity < max(1, self.policy.max_in_flight // 4):
                    # claim in batches, not one row per finished send
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                claimed: list[store.Claimed] = []
                if capacity > 0:
                    now = self.clock.now()
                    try:
                        claimed = await store.claim_due(
                            runtime.pool,
                            now=now,
                            limit=capacity,
                            lease_until=now + timedelta(seconds=self.policy.lease_seconds),
                        )
                    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                        log.warning("claiming deliveries failed", error=exc.__class__.__name__)
                        if await runtime.sleep(1.0):
                            break
                        continue
                for item in claimed:
                    task = asyncio.create_task(self._deliver(item))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                if claimed and len(claimed) == capacity:
                    continue  # more may be due: claim again as soon as there is room
                await self._wait_for_work(runtime)
        finally:
            if in_flight:  # finish what was started; unfinished rows come back by lease
                await asyncio.wait(in_flight, timeout=runtime.settings.shutdown_grace_seconds)
            if listener is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(listener.close(), timeout=2)

    async def _listen(self) -> asyncpg.Connection | None:
        """NOTIFY from the handlers wakes the worker; the poll is the safety net."""
        try:
            conn: asyncpg.Connection = await asyncpg.connect(self.dsn)
            await conn.add_listener(store.DUE_CHANNEL, lambda *_: self._wake.set())
            return conn
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("no NOTIFY listener; polling only", error=exc.__class__.__name__)
            return None

    async def _wait_for_work(self, runtime: ServiceRuntime) -> None:
        waits = [
            asyncio.create_task(self._wake.wait()),
            asyncio.create_task(runtime.stopping.wait()),
        ]
        await asyncio.wait(
            waits, timeout=self.policy.poll_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        for waiter in waits:
            waiter.cancel()
        self._wake.clear()

    # --- one delivery ------------------------------------------------------------------------

    async def _deliver(self, item: store.Claimed) -> None:
        outcome = await self._attempt(item)
        try:
            await self._record(outcome)
        except Exception as exc:  # the row keeps its lease and comes back after it
            log.warning(
                "recording a delivery outcome failed",
                error=exc.__class__.__name__,
                notification_id=str(item.notification_id),
            )
            return
        self._count(Channel(item.channel), outcome.kind)
        if outcome.kind == "retry":
            log.info(
                "delivery will be retried",
                notification_id=str(item.notification_id),
                error=outcome.error_code,
                attempts=item.attempts,
            )
        elif outcome.kind == "failed":
            log.warning(
                "delivery failed",
                notification_id=str(item.notification_id),
                error=outcome.error_code,
                permanent=outcome.permanent,
                attempts=item.attempts,
            )

    async def _attempt(self, item: store.Claimed) -> store.Outcome:
        """Try once; never raises: every way it can end is an Outcome."""
        channel = Channel(item.channel)
        try:
            data = model_for(item.event_type).model_validate(item.source_data)
            contact = await self.contacts.resolve(
                item.recipient_kind, item.recipient_agency_id, item.recipient_ref
            )
            if not item.urgent and channel in self.policy.quiet_channels:
                morning = quiet_hours_end(
                    self.clock.now(),
                    contact.time_zone,
                    self.policy.quiet_start,
                    self.policy.quiet_end,
                )
                if morning is not None:
                    return store.Outcome(item, "defer", at=morning)
            provider, provider_id = await self._send(item, data, contact, channel)
        except PermanentSendError as exc:
            return store.Outcome(item, "failed", error_code=exc.code, permanent=True)
        except TransientSendError as exc:
            return self._retry_or_fail(item, exc.code)
        except Exception as exc:  # a bug must not lose the message: retry, then fail
            log.exception("delivery crashed", notification_id=str(item.notification_id))
            return self._retry_or_fail(item, f"internal_{exc.__class__.__name__.lower()}"[:60])
        return store.Outcome(item, "sent", provider=provider, provider_message_id=provider_id)

    def _retry_or_fail(self, item: store.Claimed, code: str) -> store.Outcome:
        if item.attempts >= self.policy.max_attempts:
            return store.Outcome(item, "failed", error_code=code, permanent=False)
        delay = retry_delay(
            item.attempts,
            base=self.policy.backoff_base_seconds,
            cap=self.policy.backoff_cap_seconds,
        )
        return store.Outcome(
            item, "retry", at=self.clock.now() + timedelta(seconds=delay), error_code=code
        )

    async def _record(self, outcome: store.Outcome) -> None:
        """Group commit: outcomes that finish while a transaction is being written go
        together in the next one (one UPDATE, one outbox insert for the lot)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((outcome, done))
        if not self._flushing:
            self._flushing = True
            try:
                while self._pending:
                    batch, self._pending = self._pending, []
                    try:
                        await self._flush([o for o, _ in batch])
                    except BaseException as exc:
                        for _, future in batch:
                            if not future.done():
                                future.set_exception(
                                    exc
                                    if isinstance(exc, Exception)
                                    else RuntimeError("flush interrupted")
                                )
                        if not isinstance(exc, Exception):
                            raise
                    else:
                        for _, future in batch:
                            if not future.done():
                                future.set_result(None)
            finally:
                self._flushing = False
        await done

    async def _flush(self, outcomes: list[store.Outcome]) -> None:
        now = self.clock.now()
        sms_ids = [
            o.provider_message_id
            for o in outcomes
            if o.kind == "sent" and o.provider_message_id and o.claimed.channel == "sms"
        ]
        async with self._conn() as conn, conn.transaction():
            if sms_ids:
                await store.lock_provider_messages(conn, sms_ids)
            applied = await store.record_outcomes(conn, outcomes, now)
            events = []
            for o in outcomes:
                if o.claimed.notification_id not in applied or o.kind not in ("sent", "failed"):
                    continue
                fields = self._event_fields(o.claimed)
                data: ev.EventData = (
                    ev.NotificationSentV1(
                        **fields, provider_message_id=o.provider_message_id, sent_at=now
                    )
                    if o.kind == "sent"
                    else ev.NotificationFailedV1(
                        **fields,
                        error_code=o.error_code or "unknown",
                        permanent=o.permanent,
                        failed_at=now,
                    )
                )
                trace = new_traceparent(trace_id_of(o.claimed.traceparent))
                events.append(to_cloud_event(data, source=self.source, traceparent=trace))
            await enqueue(conn, Topic.NOTIFICATIONS, *events)
            if sms_ids:  # callbacks that beat the recording of their send
                for report in await store.reports_for(conn, sms_ids):
                    await self.apply_status_report(
                        conn,
                        report["provider_message_id"],
                        report["status"],
                        report["error_code"],
                        now,
                    )

    async def _send(
        self, item: store.Claimed, data: ev.EventData, contact: Contact, channel: Channel
    ) -> tuple[str, str]:
        address = contact.address(channel)
        if not address:
            raise PermanentSendError("no_address")
        language = language_for(contact.language, self.policy.default_language)
        ctx = message_context(
            data,
            language=language,
            time_zone=contact.time_zone,
            recipient_name=contact.name,
            role=Role(item.role),
            directory=self.directory(),
            links=self.links,
        )
        if channel is Channel.SMS:
            try:
                body = self.renderer.sms(item.event_type, language, ctx)
            except SmsTooLong as exc:
                raise PermanentSendError("sms_too_long") from exc
            await self._rate(channel)
            started = monotonic_time.perf_counter()
            receipt = await self.sms.send(address, body)
            self._observe(channel, started)
            return self.sms.name, receipt.provider_message_id
        message = self.renderer.email(item.event_type, language, ctx)
        await self._rate(channel)
        started = monotonic_time.perf_counter()
        # The delivery's own id: a retry after a timeout that did reach the server
        # carries the same Message-ID, so mail clients fold the copies.
        message_id = await self.email.send(
            address, message.subject, message.body, message_id=item.notification_id.hex
        )
        self._observe(channel, started)
        return self.email.name, message_id

    async def _rate(self, channel: Channel) -> None:
        bucket = self.rates.get(channel)
        if bucket is not None:
            wait = bucket.reserve()
            if wait > 0:
                await asyncio.sleep(wait)

    async def apply_status_report(
        self,
        conn: Conn,
        provider_message_id: str,
        status: str,
        error_code: str | None,
        now: datetime,
    ) -> None:
        """Provider says the SMS was delivered or not; undelivered -> notification.failed."""
        row = await store.apply_status(
            conn,
            provider_message_id=provider_message_id,
            status=status,
            error_code=error_code,
            now=now,
        )
        if row is None:
            return
        item = store.Claimed(
            row["notification_id"],
            row["notification_id"],
            row["source_event_id"],
            row["event_type"],
            row["source_data"],
            row["traceparent"],
            row["case_id"],
            row["recipient_id"],
            row["recipient_kind"],
            row["recipient_agency_id"],
            row["recipient_ref"],
            row["role"],
            row["channel"],
            row["urgent"],
            row["attempts"],
        )
        failed = ev.NotificationFailedV1(
            **self._event_fields(item),
            permanent=True,
            error_code=error_code or "carrier_undelivered",
            failed_at=now,
        )
        await enqueue(
            conn,
            Topic.NOTIFICATIONS,
            to_cloud_event(
                failed,
                source=self.source,
                traceparent=new_traceparent(trace_id_of(item.traceparent)),
            ),
        )

    def _event_fields(self, item: store.Claimed) -> dict[str, Any]:
        return {
            "case_id": item.case_id,
            "notification_id": item.notification_id,
            "reference": item.source_data["reference"],
            "source_event_id": item.source_event_id,
            "source_event_type": item.event_type,
            "recipient_id": item.recipient_id,
            "channel": Channel(item.channel),
            "attempts": max(1, item.attempts),
        }

    @contextlib.asynccontextmanager
    async def _conn(self) -> Any:
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            yield conn

    def _count(self, channel: Channel, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.outcomes.labels(channel.value, outcome).inc()

    def _observe(self, channel: Channel, started: float) -> None:
        if self._metrics is not None:
            self._metrics.send_seconds.labels(channel.value).observe(
                monotonic_time.perf_counter() - started
            )
