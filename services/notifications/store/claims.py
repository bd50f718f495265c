"""The delivery worker's claim: one short transaction that takes the deliveries of one
lane that are due (or whose sender's lease ran out), skipping rows another worker
holds. Each claim counts as an attempt. Two lanes, each with its own worker and its
own sending slots: messages to people (SMS, e-mail) and partner webhooks, so that a
partner's slow or hanging endpoint never delays a caseworker's message."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

import asyncpg

from services.notifications.store.deliveries import Claimed
from services.notifications.store.webhooks import WEBHOOK, WebhookClaim

_RETURNING = """
UPDATE deliveries d
SET status = 'sending', attempts = d.attempts + 1, claim_token = $3,
    lease_until = $4, updated_at = $1
FROM due
JOIN source_events s ON s.event_id = due.source_event_id
LEFT JOIN webhook_endpoints e ON e.endpoint_id = due.endpoint_id
WHERE d.notification_id = due.notification_id
RETURNING d.*, s.event_type, s.data, s.traceparent, s.source, s.occurred_at,
          e.url, COALESCE(e.enabled, false) AS enabled, e.secret, e.previous_secret,
          e.previous_secret_expires_at
"""


def _due(row: str = "") -> str:
    """Due now: pending and its time has come, or sending and its lease ran out."""
    return (
        f"(({row}status = 'pending' AND {row}next_attempt_at <= $1)"
        f" OR ({row}status = 'sending' AND {row}lease_until <= $1))"
    )


_CLAIM_MESSAGES = f"""
WITH due AS (
    SELECT notification_id, source_event_id, endpoint_id FROM deliveries
    WHERE {_due()} AND channel <> 'webhook'
    ORDER BY next_attempt_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED)
{_RETURNING}"""

# Webhooks: the same, but no endpoint gets more than $5 deliveries in flight at once
# (those it holds now, `busy`, included), so one partner's slow endpoint cannot take
# every webhook slot from the others. Each endpoint's earliest due deliveries come
# from its own index range (deliveries_endpoint_due), so a long backlog behind one
# endpoint costs the others nothing; deliveries whose sender's lease ran out (a
# crash) come back whatever their endpoint.
_CLAIM_WEBHOOKS = f"""
WITH busy AS (
    SELECT endpoint_id, count(*) AS n FROM deliveries
    WHERE status = 'sending' AND lease_until > $1 AND endpoint_id IS NOT NULL
    GROUP BY endpoint_id),
fair AS (
    (SELECT c.notification_id, c.next_attempt_at
     FROM webhook_endpoints e
     LEFT JOIN busy b ON b.endpoint_id = e.endpoint_id
     CROSS JOIN LATERAL (
         SELECT d.notification_id, d.next_attempt_at FROM deliveries d
         WHERE d.endpoint_id = e.endpoint_id AND d.status = 'pending'
           AND d.next_attempt_at <= $1
         ORDER BY d.next_attempt_at
         LIMIT GREATEST(0, $5 - COALESCE(b.n, 0))) c)
    UNION ALL
    (SELECT notification_id, next_attempt_at FROM deliveries
     WHERE status = 'sending' AND lease_until <= $1 AND channel = 'webhook')
    ORDER BY next_attempt_at
    LIMIT $2),
due AS (
    SELECT d.notification_id, d.source_event_id, d.endpoint_id
    FROM deliveries d JOIN fair ON fair.notification_id = d.notification_id
    WHERE {_due("d.")}
    FOR UPDATE OF d SKIP LOCKED)
{_RETURNING}"""


class Lane(StrEnum):
    MESSAGES = "messages"  # SMS and e-mail to people
    WEBHOOKS = "webhooks"  # partner systems


async def claim_due(
    pool: asyncpg.Pool,
    *,
    lane: Lane,
    now: datetime,
    limit: int,
    lease_until: datetime,
    per_endpoint: int = 0,
) -> list[Claimed | WebhookClaim]:
    """Up to `limit` due deliveries of the lane; webhooks at most `per_endpoint` in
    flight per endpoint."""
    if limit <= 0:
        return []
    token = uuid.uuid4()
    if lane is Lane.WEBHOOKS:
        rows = await pool.fetch(
            _CLAIM_WEBHOOKS, now, limit, token, lease_until, max(1, per_endpoint)
        )
    else:
        rows = await pool.fetch(_CLAIM_MESSAGES, now, limit, token, lease_until)
    return [
        WebhookClaim.from_row(r, token) if r["channel"] == WEBHOOK else Claimed.from_row(r, token)
        for r in rows
    ]
