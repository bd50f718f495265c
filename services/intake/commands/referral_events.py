"""What intake keeps of the referral events, in the consumer's transaction: the
disclosure grants they open and end, and whether each of a case's referrals is still
open (retention waits for all of them to end)."""

from __future__ import annotations

from contracts.events import ReferralEventV1
from services.intake import domain, store
from services.intake.domain import ConsentStatus
from services.kit.db import Conn
from services.kit.logging import get_logger

log = get_logger(__name__)

ENDING_STATES = frozenset({"closed", "cancelled", "rejected"})


async def record_referral_event(conn: Conn, event: ReferralEventV1) -> None:
    """Track the referral, then open, keep or end the receiving agency's grant for it.
    The case row is share-locked first, so a concurrent consent withdrawal or erasure
    either comes before (the grant never opens) or after (it ends it)."""
    sharing = await store.sharing_for_share(conn, event.case_id)
    if sharing is None:
        log.warning(
            "referral event for a case intake does not hold; no grant",
            case_id=str(event.case_id),
            referral_id=str(event.referral_id),
        )
        return
    ended = event.state.value in ENDING_STATES
    await store.record_case_referral(
        conn, event.referral_id, event.case_id, event.version, event.occurred_at if ended else None
    )
    if not isinstance(event, domain.GRANT_EVENTS):
        return
    current = await store.get_grant(conn, event.referral_id)
    if current is not None and current.case_id != event.case_id:
        log.warning(
            "referral event names another case than its grant; ignored",
            case_id=str(event.case_id),
            referral_id=str(event.referral_id),
        )
        return
    grant = domain.grant_after(
        current,
        event,
        consent_withdrawn=sharing.consent_status is ConsentStatus.WITHDRAWN,
        erased=sharing.erased,
    )
    if grant is None:
        return
    await store.save_grant(conn, grant)
    log.info(
        "grant ended" if grant.ended_at else "grant live",
        case_id=str(grant.case_id),
        referral_id=str(grant.referral_id),
        agency_id=grant.agency_id,
        reason=grant.end_reason.value if grant.end_reason else None,
    )
