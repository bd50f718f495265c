"""Erasure and retention: a case's identity made unrecoverable for good.

Erasing a case destroys its data key (the sealed fields can never open again), drops
everything derived from its identity (the duplicate key, the idempotency hash of its
request), ends its disclosure grants, writes an audit row (who, when, why) and
announces `case.erased`: each other service then removes what it holds that
identifies a person, and referral cancels the case's open referrals (reason
`erased`). What stays is what names nobody: the case id and reference, the agency,
the dates, the risk level and codes, the audit of disclosures and grants.

Who may erase: the registering agency (its own cases; anyone else's look missing),
and the operations role, which must give the documented basis of its decision (a
reference to the request, order or decision, kept in the audit only). Retention
erases, as `retention`, every case whose referrals all ended more than
`retention_months` ago (one registered without any referral: from its registration).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from uuid import UUID

from contracts.codes import ErasureReason
from contracts.events import CaseErasedV1
from contracts.registry import to_cloud_event
from services.intake import domain, store
from services.kit.clock import Clock
from services.kit.db import Conn, Pool
from services.kit.errors import InvalidField, NotFound
from services.kit.logging import get_logger
from services.kit.outbox import enqueue

log = get_logger(__name__)


class Requester(StrEnum):
    AGENCY = "agency"
    OPERATIONS = "operations"
    RETENTION = "retention"


@dataclass(frozen=True)
class EraseCase:
    case_id: UUID
    reason: ErasureReason
    requested_by: str  # the agency, the operations principal, or "retention"
    requester: Requester
    basis: str | None = None  # operations: the documented basis of the decision


@dataclass(frozen=True)
class ErasureReceipt:
    case_id: UUID
    reference: str
    reason: ErasureReason
    erased_at: datetime
    replayed: bool  # True: the case was erased before; nothing changed


async def erase_case(conn: Conn, cmd: EraseCase, *, clock: Clock, source: str) -> ErasureReceipt:
    """Erase the case once; a repeat answers with the first erasure."""
    if cmd.requester is Requester.OPERATIONS and not (cmd.basis or "").strip():
        raise InvalidField("basis", "operations must give the documented basis of an erasure")
    if cmd.reason is ErasureReason.RETENTION_PERIOD_ENDED and cmd.requester is not (
        Requester.RETENTION
    ):
        raise InvalidField("reason", "retention_period_ended is for the retention job alone")
    async with conn.transaction():
        case = await store.get_case(conn, cmd.case_id, lock=True)
        if case is None or (
            cmd.requester is Requester.AGENCY and case.agency_id != cmd.requested_by
        ):
            raise NotFound("case")
        done = await store.erasure_of(conn, case.case_id)
        if done is not None:
            return ErasureReceipt(
                case.case_id, case.reference, ErasureReason(done.reason), done.erased_at, True
            )
        now = clock.now()
        await store.erase(
            conn,
            store.Erasure(
                case_id=case.case_id,
                reason=cmd.reason.value,
                requested_by=cmd.requested_by,
                requester_role=cmd.requester.value,
                basis=cmd.basis,
                erased_at=now,
            ),
        )
        await store.end_grants(conn, case.case_id, now, domain.GrantEnd.ERASED)
        event = CaseErasedV1(
            case_id=case.case_id,
            reference=case.reference,
            registering_agency_id=case.agency_id,
            erased_at=now,
            reason=cmd.reason,
        )
        await enqueue(conn, event.topic, to_cloud_event(event, source=source))
    log.info(
        "case erased",
        case_id=str(case.case_id),
        reason=cmd.reason.value,
        requester=cmd.requester.value,
    )
    return ErasureReceipt(case.case_id, case.reference, cmd.reason, now, False)


def months_before(moment: datetime, months: int) -> datetime:
    """The same instant `months` calendar months earlier (the day clamped to the
    month's length: 31 March less one month is 28 or 29 February)."""
    month_index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(month_index, 12)
    month += 1
    following = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    last_day = (following - datetime(year, month, 1, tzinfo=UTC)).days
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))


async def retention_due(
    conn: Conn, *, now: datetime, months: int, limit: int
) -> list[store.RetentionCandidate]:
    """The cases retention would erase now (the dry run lists these)."""
    return await store.retention_candidates(conn, months_before(now, months), limit)


async def apply_retention(
    pool: Pool, *, clock: Clock, source: str, months: int, batch: int = 200
) -> list[ErasureReceipt]:
    """Erase every case retention holds due, a transaction per case."""
    erased: list[ErasureReceipt] = []
    while True:
        async with pool.acquire() as conn:
            due = await retention_due(conn, now=clock.now(), months=months, limit=batch)
            for candidate in due:
                erased.append(
                    await erase_case(
                        conn,
                        EraseCase(
                            case_id=candidate.case_id,
                            reason=ErasureReason.RETENTION_PERIOD_ENDED,
                            requested_by="retention",
                            requester=Requester.RETENTION,
                        ),
                        clock=clock,
                        source=source,
                    )
                )
        if len(due) < batch:
            break
    if erased:
        log.info("retention erased cases", count=len(erased), months=months)
    return erased
