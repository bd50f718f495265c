"""One delivery attempt: reconcile an earlier attempt with the provider, resolve the
recipient in the current contact book (or from intake), honour quiet hours, render
in the recipient's language, wait for the provider's rate limit, send. Every way an
attempt can end is an `Outcome`; a transient failure is retried later on the kit's
backoff schedule, stored in the delivery row rather than slept.

At most one message per delivery: a delivery claimed again after an attempt whose
outcome was never recorded (the worker killed, the database away, a timeout after
the provider may have accepted) first asks the provider, by the delivery's own
reference, whether that attempt went through; only a "no" leads to a send."""

from __future__ import annotations

import asyncio
import random
import time as monotonic_time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram

from contracts import events as ev
from contracts.codes import Channel
from contracts.registry import model_for
from services.kit.backoff import Jitter, delay_for
from services.kit.clock import Clock
from services.kit.logging import get_logger
from services.notifications import store
from services.notifications.channels import PermanentSendError, TransientSendError
from services.notifications.channels.sms import SmsProvider
from services.notifications.contacts import ContactResolver
from services.notifications.domain.messages import (
    Links,
    language_for,
    message_context,
    notice_context,
)
from services.notifications.domain.recipients import Contact, ContactBook
from services.notifications.domain.sms_text import SmsTooLong
from services.notifications.domain.timing import TokenBucket, quiet_hours_end
from services.notifications.partner_feeds import ENDPOINT_DISABLED
from services.notifications.rendering import Renderer
from services.notifications.store import Outcome, OutcomeKind

log = get_logger(__name__)


class EmailSender(Protocol):
    name: str

    async def send(self, to: str, subject: str, body: str, *, message_id: str) -> str: ...

    async def lookup(self, local_id: str) -> bool | None:
        """Whether a message with this id was accepted; None when it cannot tell."""
        ...


@dataclass(frozen=True)
class SendPolicy:
    max_attempts: int
    backoff_base_seconds: float
    backoff_cap_seconds: float
    quiet_start: time
    quiet_end: time
    quiet_channels: frozenset[Channel]
    default_language: str


def retry_or_fail(
    item: store.Claimed,
    code: str,
    policy: SendPolicy,
    now: datetime,
    *,
    jitter: Jitter = random.uniform,
) -> Outcome:
    """After a transient failure: try again after the kit's backoff for this attempt
    number (stored in the row, not slept), or fail once the attempts are spent."""
    if item.attempts >= policy.max_attempts:
        return Outcome(item, OutcomeKind.FAILED, error_code=code, permanent=False)
    delay = delay_for(
        item.attempts, base=policy.backoff_base_seconds, cap=policy.backoff_cap_seconds, rng=jitter
    )
    return Outcome(item, OutcomeKind.RETRY, at=now + timedelta(seconds=delay), error_code=code)


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.outcomes = Counter(
            "enlace_notification_outcomes",
            "Delivery attempts by outcome",
            ["channel", "outcome"],
            registry=registry,
        )
        self.reconciled = Counter(
            "enlace_notification_reconciled",
            "Deliveries found already accepted by the provider when about to resend",
            ["channel"],
            registry=registry,
        )
        self.send_seconds = Histogram(
            "enlace_notification_send_seconds",
            "Time the provider took to accept a message",
            ["channel"],
            registry=registry,
        )


class Sender:
    def __init__(
        self,
        *,
        policy: SendPolicy,
        clock: Clock,
        book: Callable[[], ContactBook | None],
        contacts: ContactResolver,
        renderer: Renderer,
        links: Links,
        sms: SmsProvider,
        email: EmailSender,
        rates: dict[Channel, TokenBucket],
        metrics: DeliveryMetrics,
        jitter: Jitter = random.uniform,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self._book = book
        self.contacts = contacts
        self.renderer = renderer
        self.links = links
        self.sms = sms
        self.email = email
        self.rates = rates
        self.metrics = metrics
        self._jitter = jitter

    async def attempt(self, item: store.Claimed) -> Outcome:
        """Try once; never raises: every way it can end is an Outcome."""
        try:
            if item.attempts > 1:  # an earlier attempt may have reached the provider
                earlier = await self._reconcile(item)
                if earlier is not None:
                    return earlier
            book = self._book()
            if book is None:
                raise TransientSendError("contact_directory_not_loaded")
            if item.source_data.get(store.ERASED_MARK):  # back for a retry after an erasure
                raise PermanentSendError("case_erased")
            data = (
                None  # a notice about an endpoint, not an event
                if item.event_type == ENDPOINT_DISABLED
                else model_for(item.event_type).model_validate(item.source_data)
            )
            contact = await self.contacts.resolve(
                item.recipient_kind, item.recipient_agency_id, item.recipient_ref, book=book
            )
            if not item.urgent and item.channel in self.policy.quiet_channels:
                morning = quiet_hours_end(
                    self.clock.now(),
                    contact.time_zone,
                    self.policy.quiet_start,
                    self.policy.quiet_end,
                )
                if morning is not None:
                    return Outcome(item, OutcomeKind.DEFER, at=morning)
            provider, provider_id = await self._send(item, data, contact, book)
        except PermanentSendError as exc:
            return Outcome(item, OutcomeKind.FAILED, error_code=exc.code, permanent=True)
        except TransientSendError as exc:
            return self.retry_or_fail(item, exc.code)
        except Exception as exc:  # a bug must not lose the message: retry, then fail
            log.exception("delivery crashed", notification_id=str(item.notification_id))
            return self.retry_or_fail(item, f"internal_{exc.__class__.__name__.lower()}"[:60])
        return Outcome(item, OutcomeKind.SENT, provider=provider, provider_message_id=provider_id)

    async def _reconcile(self, item: store.Claimed) -> Outcome | None:
        """The earlier attempt's message if the provider has it (recorded as sent, not
        sent again); None when it has not, or cannot tell (then the send goes ahead)."""
        reference = item.notification_id.hex
        if item.channel is Channel.SMS:
            receipt = await self.sms.lookup(reference)
            if receipt is None:
                return None
            provider, provider_id = self.sms.name, receipt.provider_message_id
        else:
            if not await self.email.lookup(reference):
                return None
            provider, provider_id = self.email.name, reference
        self.metrics.reconciled.labels(item.channel.value).inc()
        log.info(
            "earlier attempt found at the provider; not sent again",
            notification_id=str(item.notification_id),
            channel=item.channel.value,
        )
        return Outcome(item, OutcomeKind.SENT, provider=provider, provider_message_id=provider_id)

    def retry_or_fail(self, item: store.Claimed, code: str) -> Outcome:
        return retry_or_fail(item, code, self.policy, self.clock.now(), jitter=self._jitter)

    async def _send(
        self, item: store.Claimed, data: ev.EventData | None, contact: Contact, book: ContactBook
    ) -> tuple[str, str]:
        channel = item.channel
        address = contact.address(channel)
        if not address:
            raise PermanentSendError("no_address")
        language = language_for(contact.language, self.policy.default_language)
        if data is None:
            ctx = notice_context(
                item.source_data,
                language=language,
                time_zone=contact.time_zone,
                recipient_name=contact.name,
            )
        else:
            ctx = message_context(
                data,
                language=language,
                time_zone=contact.time_zone,
                recipient_name=contact.name,
                role=item.role,
                book=book,
                links=self.links,
            )
        if channel is Channel.SMS:
            try:
                body = self.renderer.sms(item.event_type, language, ctx)
            except SmsTooLong as exc:
                raise PermanentSendError("sms_too_long") from exc
            await self._rate(channel)
            started = monotonic_time.perf_counter()
            receipt = await self.sms.send(address, body, reference=item.notification_id.hex)
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

    def _observe(self, channel: Channel, started: float) -> None:
        self.metrics.send_seconds.labels(channel.value).observe(
            monotonic_time.perf_counter() - started
        )
