"""Partner feeds: the one fan-out that gives each agency's system the events that
concern it, and nothing else (`domain.partners.concerned_agencies`).

In the transaction that keeps the event (so a redelivered event adds nothing):
- one webhook delivery row per endpoint of a concerned agency that subscribed to
  the event's type (sent, retried and logged by the delivery worker, like SMS and
  e-mail); held, not dropped, for an endpoint disabled for failing too long;
- the event, as published, to the feed topic of each concerned agency that has one
  (`protection.partner.<agency>.v1`, declared in deploy/kafka-access.yaml), through
  the kit's outbox: the one reliable Kafka writer, which keeps each case's order.

And when an endpoint is disabled (it answered 410, or failed for longer than allowed:
seen by the worker, or by the sweep when nothing is being tried any more), its
agency's focal point is told by e-mail: a delivery row too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from prometheus_client import CollectorRegistry, Gauge

from contracts import events as ev
from contracts.codes import Channel
from contracts.envelope import CloudEvent, new_traceparent
from contracts.topics import partner_topic
from services.kit.clock import Clock
from services.kit.db import Conn
from services.kit.logging import get_logger
from services.kit.outbox import enqueue
from services.kit.periodic import run_every
from services.kit.runtime import ServiceRuntime
from services.notifications import store
from services.notifications.domain.partners import concerned_agencies, endpoints_for
from services.notifications.domain.recipients import ContactBook, Recipient, RecipientKind, Role
from services.notifications.store import endpoint_health as health
from services.notifications.store import webhooks as hooks

log = get_logger(__name__)

# The notice e-mailed to an agency's focal point when one of its endpoints is
# disabled (templates enlace.webhook_endpoint.disabled.<lang>.email.j2).
ENDPOINT_DISABLED = "enlace.webhook_endpoint.disabled"


@dataclass(frozen=True)
class Published:
    """An event as it was published, for partners (who receive it unchanged)."""

    event_id: str
    source: str
    occurred_at: datetime
    traceparent: str
    data: ev.EventData

    def cloud_event(self) -> CloudEvent:
        return CloudEvent(
            type=self.data.event_type,
            source=self.source,
            subject=str(self.data.case_id),
            data=self.data.model_dump(mode="json"),
            id=self.event_id,
            time=self.occurred_at,
            traceparent=self.traceparent,
        )


@dataclass(frozen=True)
class Fanned:
    webhooks: int  # webhook delivery rows created
    topics: list[str]  # the agencies whose feed topic got the event


async def fan_out(
    conn: Conn, event: Published, *, feed_agencies: frozenset[str], now: datetime
) -> Fanned:
    """The event's partner deliveries, in the caller's transaction, which has kept
    the event (`source_events`) just before."""
    agencies = concerned_agencies(event.data)
    if not agencies:
        return Fanned(0, [])
    targets = endpoints_for(
        event.data.event_type, agencies, await hooks.receiving_endpoints(conn, agencies)
    )
    created = await hooks.insert_webhook_deliveries(
        conn, event_id=event.event_id, case_id=event.data.case_id, targets=targets, now=now
    )
    topics = sorted(agencies & feed_agencies)
    for agency in topics:
        await enqueue(conn, partner_topic(agency), event.cloud_event())
    return Fanned(created, topics)


async def notify_endpoints_disabled(
    conn: Conn, disabled: list[asyncpg.Record], *, book: ContactBook | None, now: datetime
) -> None:
    """Tell each disabled endpoint's agency, by e-mail to its focal point."""
    for row in disabled:
        log.warning(
            "webhook endpoint disabled",
            endpoint_id=str(row["endpoint_id"]),
            agency_id=row["agency_id"],
            reason=row["disabled_reason"],
        )
        focal = book.focal_point(row["agency_id"]) if book is not None else None
        if focal is None or Channel.EMAIL not in focal.channels or not focal.email:
            log.warning("no focal point e-mail to tell", agency_id=row["agency_id"])
            continue
        event_id = f"{ENDPOINT_DISABLED}.{row['endpoint_id']}.{int(now.timestamp() * 1000)}"
        since = row["failing_since"]
        await store.save_source_event(
            conn,
            event_id=event_id,
            event_type=ENDPOINT_DISABLED,
            case_id=None,
            data={
                "endpoint_id": str(row["endpoint_id"]),
                "agency_id": row["agency_id"],
                "url": row["url"],
                "reason": row["disabled_reason"],
                "failing_since": since.isoformat() if since else None,
                "disabled_at": now.isoformat(),
            },
            traceparent=new_traceparent(),
            received_at=now,
            content_key=event_id,
        )
        recipient = Recipient(
            RecipientKind.DIRECTORY, row["agency_id"], focal.id, Role.FOCAL_POINT, (Channel.EMAIL,)
        )
        await store.insert_deliveries(
            conn,
            event_id=event_id,
            case_id=None,
            owner_agency_id=row["agency_id"],
            recipients=[recipient],
            urgent=False,
            now=now,
        )


class FailingEndpointSweep:
    """Disables the endpoints that have failed for longer than allowed even when no
    delivery to them is being tried any more (their retries spent, no new event for
    the agency): the agency's focal point must hear of it all the same."""

    def __init__(
        self,
        *,
        clock: Clock,
        every_seconds: float,
        disable_after: timedelta,
        book: Callable[[], ContactBook | None],
        registry: CollectorRegistry,
    ) -> None:
        self.clock = clock
        self.every_seconds = every_seconds
        self.disable_after = disable_after
        self.book = book
        # For operations: which agencies' systems are not receiving (the alert
        # EnlacePartnerEndpointDisabled), refreshed at each sweep.
        self.endpoints = Gauge(
            "enlace_webhook_endpoints",
            "Partner webhook endpoints by agency and state (healthy, failing, paused, "
            "disabled_agency, disabled_gone, disabled_failing)",
            ["agency", "state"],
            registry=registry,
        )

    async def sweep_failing_endpoints(self, runtime: ServiceRuntime) -> None:
        async def sweep() -> None:
            async with runtime.pool.acquire() as conn, conn.transaction():
                now = self.clock.now()
                disabled = await health.disable_long_failing(
                    conn, now=now, failing_limit=now - self.disable_after
                )
                if disabled:
                    await notify_endpoints_disabled(conn, disabled, book=self.book(), now=now)
                states = await health.endpoint_states(conn, now)
            self.endpoints.clear()
            for row in states:
                self.endpoints.labels(row["agency_id"], row["state"]).set(row["endpoints"])

        await run_every(runtime, self.every_seconds, sweep, what="sweeping endpoints")
