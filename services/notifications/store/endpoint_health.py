"""SQL for what becomes of partner webhook endpoints: what the answers of one
recording do to them (healthy again, failing since, paused, disabled, their
deliveries held), the sweep that disables those failing too long when nothing is
tried any more, and how many endpoints each agency has in each state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from services.kit.db import Conn
from services.notifications.store.webhooks import hold_deliveries

# --- what answers do to endpoints ---------------------------------------------------------------


@dataclass(frozen=True)
class EndpointNews:
    """What the outcomes of one recording say about the endpoints involved."""

    healthy: set[UUID]  # delivered: no longer failing
    failing: set[UUID]  # not delivered (will be retried, or given up)
    gone: set[UUID]  # answered 410
    paused: dict[UUID, datetime]  # asked to back off until
    touched: set[UUID]  # every endpoint of the recording


async def apply_endpoint_news(
    conn: Conn, news: EndpointNews, *, now: datetime, failing_limit: datetime
) -> list[asyncpg.Record]:
    """Apply one recording's news; returns the endpoints disabled by it (gone, or
    failing since before `failing_limit`), each with why."""
    if news.healthy:
        await conn.execute(
            """UPDATE webhook_endpoints SET failing_since = NULL, updated_at = $2
               WHERE endpoint_id = ANY($1::uuid[]) AND failing_since IS NOT NULL""",
            list(news.healthy),
            now,
        )
    failing = list(news.failing - news.healthy)
    if failing:
        await conn.execute(
            """UPDATE webhook_endpoints SET failing_since = $2, updated_at = $2
               WHERE endpoint_id = ANY($1::uuid[]) AND failing_since IS NULL""",
            failing,
            now,
        )
    for endpoint_id, until in news.paused.items():
        await conn.execute(
            """UPDATE webhook_endpoints SET paused_until = GREATEST(paused_until, $2)
               WHERE endpoint_id = $1""",
            endpoint_id,
            until,
        )
        await conn.execute(
            """UPDATE deliveries SET next_attempt_at = GREATEST(next_attempt_at, $2)
               WHERE endpoint_id = $1 AND status = 'pending'""",
            endpoint_id,
            until,
        )
    disabled = await conn.fetch(
        """UPDATE webhook_endpoints SET enabled = false, updated_at = $3,
                  disabled_reason = CASE WHEN endpoint_id = ANY($1::uuid[]) THEN 'gone'
                                         ELSE 'failing' END
           WHERE enabled AND (endpoint_id = ANY($1::uuid[])
                              OR (endpoint_id = ANY($4::uuid[]) AND failing_since <= $2))
           RETURNING endpoint_id, agency_id, url, disabled_reason, failing_since""",
        list(news.gone),
        failing_limit,
        now,
        failing,
    )
    for row in disabled:
        await hold_deliveries(conn, row["endpoint_id"], now)
        if row["disabled_reason"] == "failing":
            await hold_failed_since(conn, row["endpoint_id"], row["failing_since"], now)
    # A send that was under way when its endpoint was disabled (by the sweep, or its
    # agency) and is to be tried again waits with the others.
    await conn.execute(
        """UPDATE deliveries d SET status = 'held', updated_at = $2
           FROM webhook_endpoints e
           WHERE e.endpoint_id = d.endpoint_id AND NOT e.enabled
             AND d.endpoint_id = ANY($1::uuid[]) AND d.status = 'pending'""",
        list(news.touched),
        now,
    )
    return list(disabled)


async def disable_long_failing(
    conn: Conn, *, now: datetime, failing_limit: datetime
) -> list[asyncpg.Record]:
    """The sweep: endpoints failing since before `failing_limit` are disabled even when
    no delivery is being tried any more (their retries spent, no new event), with
    their deliveries held as when a failure disables them."""
    disabled = await conn.fetch(
        """UPDATE webhook_endpoints SET enabled = false, disabled_reason = 'failing',
                  updated_at = $2
           WHERE enabled AND failing_since <= $1
           RETURNING endpoint_id, agency_id, url, disabled_reason, failing_since""",
        failing_limit,
        now,
    )
    for row in disabled:
        await hold_deliveries(conn, row["endpoint_id"], now)
        await hold_failed_since(conn, row["endpoint_id"], row["failing_since"], now)
    return list(disabled)


async def endpoint_states(conn: Conn, now: datetime) -> list[asyncpg.Record]:
    """How many endpoints each agency has in each state: healthy, failing (enabled,
    not delivering), paused, or disabled_<why> (agency, gone, failing)."""
    return list(
        await conn.fetch(
            """SELECT agency_id,
                      CASE WHEN NOT enabled THEN 'disabled_' || COALESCE(disabled_reason, 'agency')
                           WHEN paused_until > $1 THEN 'paused'
                           WHEN failing_since IS NOT NULL THEN 'failing'
                           ELSE 'healthy' END AS state,
                      count(*) AS endpoints
               FROM webhook_endpoints GROUP BY 1, 2""",
            now,
        )
    )


async def hold_failed_since(conn: Conn, endpoint_id: UUID, since: datetime, now: datetime) -> None:
    """Deliveries that spent their retries while the endpoint was failing wait for it
    too, with a fresh schedule: enabling it sends everything it missed. Not those
    that can never be sent (their case erased, their endpoint gone)."""
    await conn.execute(
        """UPDATE deliveries SET status = 'held', attempts = 0, updated_at = $3
           WHERE endpoint_id = $1 AND status = 'failed' AND updated_at >= $2
             AND error_code IS DISTINCT FROM 'case_erased'""",
        endpoint_id,
        since,
        now,
    )
