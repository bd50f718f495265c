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

_CLAIM = """
WITH due AS (
    SELECT notification_id, source_event_id, endpoint_id FROM deliveries
    WHERE ((status = 'pending' AND next_attempt_at <= $1)
           OR (status = 'sending' AND lease_until <= $1))
      AND (channel = 'webhook') = $5
    ORDER BY next_attempt_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED)
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


class Lane(StrEnum):
    MESSAGES = "messages"  # SMS and e-mail to people
    WEBHOOKS = "webhooks"  # partner systems


async def claim_due(
    pool: asyncpg.Pool, *, lane: Lane, now: datetime, limit: int, lease_until: datetime
) -> list[Claimed | WebhookClaim]:
    if limit <= 0:
        return []
    token = uuid.uuid4()
    rows = await pool.fetch(_CLAIM, now, limit, token, lease_until, lane is Lane.WEBHOOKS)
    return [
        WebhookClaim.from_row(r, token) if r["channel"] == WEBHOOK else Claimed.from_row(r, token)
        for r in rows
    ]
