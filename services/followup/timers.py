"""The timer loop: fires due timers from the database.

Each pass reads the injected clock, claims up to a batch of due timers with
`FOR UPDATE SKIP LOCKED` (so replicas never fire the same one), and in ONE
transaction advances each timer and enqueues its event through the kit outbox.
A crash before the commit leaves the timers due; after it, the outbox publishes.
A pass that fired something is followed at once by another (catch-up after
downtime, next escalation level already past); otherwise the loop waits for
`wake()` or the poll interval. A pass the database refuses is retried on the kit's
backoff schedule (`services.kit.backoff`).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import asyncpg
from prometheus_client import Counter

from contracts.codes import FollowupKind, RiskLevel
from contracts.envelope import CloudEvent, schema_urn
from contracts.events import FollowupDueV1, ReferralOverdueV1
from contracts.registry import to_cloud_event
from contracts.topics import Topic
from services.followup import domain, store
from services.followup.domain import FollowupStatus
from services.followup.store.timers import TimerKind, TimerStatus, TimerUpdate
from services.kit.backoff import Backoff, pause
from services.kit.clock import Clock
from services.kit.db import Conn
from services.kit.logging import get_logger
from services.kit.outbox import enqueue
from services.kit.supervision import loop_health
from services.kit.transient import is_transient

log = get_logger(__name__)

RETRY_BASE_SECONDS = 0.5
RETRY_CAP_SECONDS = 10.0


def _json_time(moment: datetime) -> str:
    """As pydantic writes it: UTC as 'Z'."""
    return moment.isoformat().replace("+00:00", "Z")


class TimerLoop:
    def __init__(
        self,
        *,
        pool_of: Callable[[], asyncpg.Pool],
        clock: Clock,
        policy: domain.DeadlinePolicy,
        source: str,
        batch_size: int,
        poll_seconds: float,
        fired_counter: Counter,
    ) -> None:
        self._pool_of = pool_of
        self._clock = clock
        self._policy = policy
        self._source = source
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._fired = fired_counter
        self._wake = asyncio.Event()
        self.passes = 0
        self.last_pass_at: datetime | None = None  # the clock reading of the last pass

    def wake(self) -> None:
        """Check for due timers now (tests call it after moving the clock)."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event, concurrency: int = 1) -> None:
        await asyncio.gather(*(self._run_one(stopping) for _ in range(concurrency)))

    async def _run_one(self, stopping: asyncio.Event) -> None:
        backoff = Backoff(RETRY_BASE_SECONDS, RETRY_CAP_SECONDS)
        while not stopping.is_set():
            self._wake.clear()
            try:
                fired = await self.fire_due()
                backoff.reset()
                loop_health().ok()
            except Exception as exc:
                if not is_transient(exc):
                    raise  # the supervisor logs it and starts the loop again
                loop_health().failing(f"timers: {exc.__class__.__name__}")
                delay = backoff.next_delay()
                log.warning(
                    "timer pass failed; retrying",
                    error=exc.__class__.__name__,
                    retry_in=round(delay, 2),
                )
                await pause(delay, self._wake, stopping)
                continue
            if fired == 0:
                await pause(self._poll_seconds, self._wake, stopping)

    async def fire_due(self) -> int:
        """One pass; returns how many timers fired."""
        now = self._clock.now()
        fired_labels: list[tuple[str, str, str]] = []
        async with self._pool_of().acquire() as conn, conn.transaction():
            rows = await store.timers.claim_due_timers(conn, now, self._batch_size)
            updates: list[TimerUpdate] = []
            events: dict[str, list[CloudEvent]] = {}
            due_followups: list[UUID] = []
            for row in rows:
                kind = TimerKind(row["kind"])
                if kind is TimerKind.DEADLINE:
                    update, event = self._fire_deadline(row)
                    fired_labels.append((kind, row["deadline"], str(row["level"])))
                elif kind is TimerKind.FOLLOWUP:
                    update, event = self._fire_followup(row)
                    if event is not None:
                        due_followups.append(row["followup_id"])
                        fired_labels.append((kind, row["f_kind"], ""))
                else:
                    update, event = await self._fire_review(conn, row, now)
                    if event is not None:
                        fired_labels.append((kind, FollowupKind.PERIODIC_REVIEW.value, ""))
                updates.append(update)
                if event is not None:
                    events.setdefault(event.type.split(".")[0], []).append(event)
            overdue = events.get("referral")
            if overdue:
                # Overdue data is assembled straight from the stored referral (a burst of
                # thousands is the hot path); checking one per pass against the contract
                # catches any drift between the two without paying for every row.
                ReferralOverdueV1.model_validate(overdue[0].data)
            await store.timers.apply_timer_updates(conn, updates)
            await store.followups.mark_followups_due(conn, due_followups)
            for family, batch in events.items():
                topic = Topic.REFERRALS if family == "referral" else Topic.FOLLOWUPS
                await enqueue(conn, topic, *batch)
        for labels, count in collections.Counter(fired_labels).items():
            self._fired.labels(*labels).inc(count)
        self.passes += 1
        self.last_pass_at = now
        if rows:
            log.info("timers fired", count=len(rows), events=sum(map(len, events.values())))
        return len(rows)

    def _fire_deadline(self, row: Any) -> tuple[TimerUpdate, CloudEvent | None]:
        firing = domain.fire_deadline(
            self._policy, started_at=row["started_at"], due_at=row["due_at"], level=row["level"]
        )
        if firing.next_fire_at is None:
            update = TimerUpdate(
                row["timer_id"], TimerStatus.ESCALATED, row["level"], row["fire_at"]
            )
        else:
            update = TimerUpdate(
                row["timer_id"], TimerStatus.PENDING, row["level"] + 1, firing.next_fire_at
            )
        data = {
            "case_id": str(row["case_id"]),
            "referral_id": str(row["referral_id"]),
            "reference": row["reference"],
            "state": row["state"],
            "version": row["version"],
            "from_agency_id": row["from_agency_id"],
            "to_agency_id": row["to_agency_id"],
            "service_id": row["service_id"],
            "service_type": row["service_type"],
            "urgency": row["urgency"],
            "case_country": row["case_country"],
            "case_region": row["case_region"],
            "service_country": row["service_country"],
            "cross_border": row["cross_border"],
            "occurred_at": _json_time(row["fire_at"]),
            "deadline": row["deadline"],
            "due_at": _json_time(row["due_at"]),
            "escalation_level": firing.level,
        }
        key = f"overdue:{row['timer_id']}:{firing.level}"
        return update, CloudEvent(
            type=ReferralOverdueV1.event_type,
            source=self._source,
            subject=data["case_id"],
            data=data,
            id=str(uuid5(NAMESPACE_URL, f"enlace:{key}")),
            dataschema=schema_urn(ReferralOverdueV1.event_type),
        )

    def _fire_followup(self, row: Any) -> tuple[TimerUpdate, CloudEvent | None]:
        done = TimerUpdate(
            row["timer_id"], TimerStatus.FINISHED, row["level"], row["fire_at"], finished_by="fired"
        )
        if row["f_status"] != FollowupStatus.SCHEDULED:  # completed early: nothing to announce
            return done, None
        caseworker = row["f_caseworker_id"]
        if caseworker is None and row["c_agency_id"] == row["f_agency_id"]:
            caseworker = row["c_caseworker_id"]  # case.created was applied after the closure
        due = FollowupDueV1(
            case_id=row["case_id"],
            followup_id=row["followup_id"],
            reference=row["f_reference"],
            referral_id=row["f_referral_id"],
            kind=FollowupKind(row["f_kind"]),
            agency_id=row["f_agency_id"],
            caseworker_id=caseworker,
            risk_level=RiskLevel(row["f_risk_level"]),
            due_at=row["f_due_at"],
        )
        return done, self._cloud_event(due, f"followup-due:{row['followup_id']}")

    async def _fire_review(
        self, conn: Conn, row: Any, now: datetime
    ) -> tuple[TimerUpdate, CloudEvent | None]:
        open_now = await store.projections.open_referrals(conn, row["case_id"])
        if open_now.count == 0:
            return TimerUpdate(
                row["timer_id"],
                TimerStatus.FINISHED,
                row["level"],
                row["fire_at"],
                finished_by="no_open_referrals",
            ), None
        case = await store.projections.get_case(conn, row["case_id"])
        assert open_now.highest_urgency is not None
        assert open_now.reference is not None
        risk = (
            RiskLevel.highest(case.risk_level, open_now.highest_urgency)
            if case
            else open_now.highest_urgency
        )
        agency = case.registering_agency_id if case else open_now.sender
        assert agency is not None
        due_at = row["fire_at"]
        # Deterministic id: the same review (case, due time) is one follow-up, ever.
        followup_id = uuid5(NAMESPACE_URL, f"enlace:review:{row['case_id']}:{due_at.isoformat()}")
        created = await store.followups.create_followup(
            conn,
            origin=f"review:{row['case_id']}:{due_at.isoformat()}",
            kind=FollowupKind.PERIODIC_REVIEW,
            case_id=row["case_id"],
            reference=case.reference if case else open_now.reference,
            referral_id=None,
            agency_id=agency,
            caseworker_id=case.caseworker_id if case else None,
            risk_level=risk,
            due_at=due_at,
            status=FollowupStatus.DUE,
            followup_id=followup_id,
        )
        update = TimerUpdate(
            row["timer_id"],
            TimerStatus.PENDING,
            row["level"] + 1,
            domain.next_review_at(due_at, self._policy.periodic_review, now),
        )
        if created is None:
            return update, None
        due = FollowupDueV1(
            case_id=row["case_id"],
            followup_id=followup_id,
            reference=case.reference if case else open_now.reference,
            referral_id=None,
            kind=FollowupKind.PERIODIC_REVIEW,
            agency_id=agency,
            caseworker_id=case.caseworker_id if case else None,
            risk_level=risk,
            due_at=due_at,
        )
        return update, self._cloud_event(due, f"followup-due:{followup_id}")

    def _cloud_event(self, data: Any, key: str) -> CloudEvent:
        # A deterministic event id: one firing is one event id, so even a republished
        # copy is recognisably the same event to every consumer.
        event = to_cloud_event(data, source=self._source)
        return dataclasses.replace(event, id=str(uuid5(NAMESPACE_URL, f"enlace:{key}")))
