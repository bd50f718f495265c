"""Kafka handlers: route each new case; cancel open referrals when consent is withdrawn.

Both run inside the kit consumer's transaction (the event id is recorded beside their
effects), and both lock the case row first, so a case's events leave in commit order.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from contracts.codes import CancellationReason
from contracts.envelope import CloudEvent, new_traceparent
from contracts.events import CaseConsentWithdrawnV1, CaseCreatedV1, ReferralUnmetNeedV1
from contracts.topics import Topic
from services.kit.clock import Clock
from services.kit.consumer import Subscription
from services.kit.db import Conn as Connection
from services.kit.logging import get_logger
from services.referral import lifecycle, store
from services.referral.directory import DirectoryCache
from services.referral.domain import (
    Action,
    CaseProfile,
    Deadlines,
    RoutingRules,
    plan_routing,
)

log = get_logger(__name__)


class ReferralMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.unmet_needs = Counter(
            "enlace_referral_unmet_needs",
            "Needs of new cases that no eligible service covers",
            ["service_type", "country", "reason"],
            registry=registry,
        )
        self.referrals_created = Counter(
            "enlace_referrals_created",
            "Referrals made by routing or by hand, by first state",
            ["state", "service_type"],
            registry=registry,
        )
        self.disclosures = Counter(
            "enlace_referral_disclosures",
            "Identifying details disclosed to receiving agencies",
            registry=registry,
        )


class Handlers:
    def __init__(
        self,
        *,
        rules: RoutingRules,
        directory: DirectoryCache,
        deadlines: Deadlines,
        clock: Clock,
        source: str,
        metrics: ReferralMetrics,
    ) -> None:
        self.rules = rules
        self.directory = directory
        self.deadlines = deadlines
        self.clock = clock
        self.source = source
        self.metrics = metrics

    def subscription(self) -> Subscription:
        return Subscription(
            topic=Topic.CASES,
            name="referral-cases",
            handlers={
                CaseCreatedV1.event_type: self.case_created,
                CaseConsentWithdrawnV1.event_type: self.consent_withdrawn,
            },
        )

    async def case_created(self, conn: Connection, event: CloudEvent) -> None:
        case_event = CaseCreatedV1.model_validate(event.data)
        await self.directory.wait_loaded()
        now = self.clock.now()
        case = CaseProfile.from_event(case_event)
        plan = plan_routing(case, self.rules, self.directory.offers)
        new = [
            lifecycle.new_from_plan(case, p, now=now, deadlines=self.deadlines)
            for p in plan.referrals
        ]
        # The case row is also the case lock; a case seen before (the same case.created
        # under another event id) was routed then and is not routed again.
        if not await store.insert_routed_case(conn, event.data, case_event, new, now):
            log.info("case already routed", case_id=str(case_event.case_id))
            return
        events = [lifecycle.initial_event(n) for n in new]
        unmet_events = [
            ReferralUnmetNeedV1(
                case_id=case.case_id,
                reference=case.reference,
                registering_agency_id=case.registering_agency_id,
                service_type=u.service_type,
                country=case.country,
                region=case.region,
                urgency=u.urgency,
                reason=u.reason.value,
                occurred_at=now,
            )
            for u in plan.unmet
        ]
        traceparent = new_traceparent(event.trace_id)
        await lifecycle.publish(
            conn, [*events, *unmet_events], source=self.source, traceparent=traceparent
        )
        for n in new:
            self.metrics.referrals_created.labels(n.state.value, n.facts.service_type.value).inc()
        for u in plan.unmet:
            self.metrics.unmet_needs.labels(
                u.service_type.value, case.country, u.reason.value
            ).inc()
        log.debug(
            "case routed",
            case_id=str(case.case_id),
            reference=case.reference,
            sent=sum(n.state.value == "sent" for n in new),
            proposed=sum(n.state.value == "proposed" for n in new),
            unmet=[u.service_type.value for u in plan.unmet],
            served_internally=[t.value for t in plan.served_internally],
        )

    async def consent_withdrawn(self, conn: Connection, event: CloudEvent) -> None:
        withdrawal = CaseConsentWithdrawnV1.model_validate(event.data)
        case = await store.lock_case(conn, withdrawal.case_id)
        if case is None:
            log.info(
                "consent withdrawn for a case never routed here", case_id=str(withdrawal.case_id)
            )
            return
        now = self.clock.now()
        await store.mark_consent_withdrawn(conn, case.case_id, withdrawal.withdrawn_at)
        traceparent = new_traceparent(event.trace_id)
        cancelled = 0
        for referral in await store.open_referrals_of_case(conn, case.case_id):
            await lifecycle.transition(
                conn,
                referral,
                Action.CANCEL,
                now=now,
                deadlines=self.deadlines,
                source=self.source,
                traceparent=traceparent,
                cancellation_reason=CancellationReason.CONSENT_WITHDRAWN,
            )
            cancelled += 1
        log.info(
            "consent withdrawn: open referrals cancelled",
            case_id=str(case.case_id),
            cancelled=cancelled,
        )
