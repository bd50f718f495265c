"""What the closed-loop report (the API's and the dashboards') reads."""

from __future__ import annotations

from datetime import datetime

from services.followup.domain import TrackedReferral
from services.kit.db import Conn


async def tracked_referrals(
    conn: Conn,
    *,
    agency_id: str | None,
    period_from: datetime | None,
    period_to: datetime | None,
    service_type: str | None,
    region: str | None,
    now: datetime,
) -> list[TrackedReferral]:
    """The sent referrals an agency (None: operations, every one) is part of, filtered;
    `overdue_now` says whether a deadline is past at `now`."""
    rows = await conn.fetch(
        """SELECT r.referral_id, r.from_agency_id, r.to_agency_id, r.service_type,
                  r.case_region, r.urgency, r.sent_at, r.acknowledge_due_at, r.acknowledged_at,
                  r.closed_at, r.outcome,
                  EXISTS (SELECT 1 FROM timers t
                          WHERE t.kind = 'deadline' AND t.referral_id = r.referral_id
                            AND t.status <> 'finished' AND t.due_at <= $6) AS overdue_now
           FROM referrals r
           WHERE r.sent_at IS NOT NULL
             AND ($1::text IS NULL OR r.from_agency_id = $1 OR r.to_agency_id = $1)
             AND ($2::timestamptz IS NULL OR r.sent_at >= $2)
             AND ($3::timestamptz IS NULL OR r.sent_at < $3)
             AND ($4::text IS NULL OR r.service_type = $4)
             AND ($5::text IS NULL OR r.case_region = $5)""",
        agency_id,
        period_from,
        period_to,
        service_type,
        region,
        now,
    )
    return [
        TrackedReferral(
            referral_id=r["referral_id"],
            from_agency_id=r["from_agency_id"],
            to_agency_id=r["to_agency_id"],
            service_type=r["service_type"],
            region=r["case_region"],
            urgency=r["urgency"],
            sent_at=r["sent_at"],
            acknowledge_due_at=r["acknowledge_due_at"],
            acknowledged_at=r["acknowledged_at"],
            closed_at=r["closed_at"],
            outcome=r["outcome"],
            overdue_now=r["overdue_now"],
        )
        for r in rows
    ]
