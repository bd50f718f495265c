"""A delivery's statuses, and what an SMS provider's status report does to a sent
SMS, without I/O.

Reports are retried by the provider, so they can arrive twice or out of order: a
report never moves a delivery back (delivered stays delivered when a late "sent"
arrives), and only a sent or delivered SMS is moved at all."""

from __future__ import annotations

from enum import StrEnum


class DeliveryStatus(StrEnum):
    """deliveries.status (the migration's CHECK lists the same values)."""

    PENDING = "pending"  # due at next_attempt_at
    SENDING = "sending"  # claimed by a worker until lease_until
    SENT = "sent"  # the provider accepted it
    DELIVERED = "delivered"  # the carrier reported it delivered (SMS)
    FAILED = "failed"  # given up: permanent error or attempts exhausted
    UNDELIVERED = "undelivered"  # accepted, then reported undeliverable (SMS)
    CANCELLED = "cancelled"  # never attempted: its case was erased (error_code case_erased)


# What a report moves a sent SMS to; other reports (queued, sent, ...) are recorded
# and change only the provider status.
REPORTED_STATUS = {
    "delivered": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.UNDELIVERED,
}

# How far along each provider status is.
PROGRESS = {
    "accepted": 1,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
}

MOVABLE = frozenset({DeliveryStatus.SENT, DeliveryStatus.DELIVERED})


def after_report(status: str, provider_status: str | None, reported: str) -> DeliveryStatus | None:
    """The delivery's status after the report, or None when the report changes
    nothing (the delivery is not a sent SMS, or the report is older than what is
    known)."""
    if status not in MOVABLE:
        return None
    if PROGRESS.get(reported, 0) < PROGRESS.get(provider_status or "", 0):
        return None  # a late report: kept in the reports table, the row is further on
    return REPORTED_STATUS.get(reported, DeliveryStatus(status))
