"""Operations' SQL: dead letters and their status, the audit (append-only), lag
samples and the referral-health projections."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import orjson

from services.kit.db import Conn
from services.ops.domain import (
    AuditEntry,
    DeadLetter,
    DeadLetterFilter,
    FailedNotificationCount,
    LagPoint,
    OverdueCount,
    PartitionLag,
    RecordRef,
    UnmetNeedCount,
)

Db = Conn | asyncpg.Pool

_LETTER_COLUMNS = (
    "topic",
    "partition",
    "offset",
    "received_at",
    "error_type",
    "error_message",
    "attempts",
    "consumer_service",
    "consumer_group",
    "original_topic",
    "original_partition",
    "original_offset",
    "event_id",
    "event_type",
    "event_source",
    "case_id",
    "case_reference",
    "status",
    "status_at",
    "status_by",
    "redrives",
)
_SELECT_LETTER = ", ".join(f'"{c}"' for c in _LETTER_COLUMNS)
_DESCRIBED = _LETTER_COLUMNS[4:17]


def _letter(row: asyncpg.Record) -> DeadLetter:
    return DeadLetter.model_validate({c: row[c] for c in _LETTER_COLUMNS})


# --- dead letters ---------------------------------------------------------------------


async def insert_dead_letters(conn: Conn, rows: list[dict[str, Any]]) -> int:
    """Rows read from the .dlq topics; a record read twice is kept once."""
    columns = (
        "topic",
        "partition",
        "offset",
        "record_key",
        "record_value",
        "header_keys",
        "header_values",
        "received_at",
        *_DESCRIBED,
    )
    names = ", ".join(f'"{c}"' for c in columns)
    params = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    await conn.executemany(
        f"INSERT INTO dead_letters ({names}) VALUES ({params}) ON CONFLICT DO NOTHING",
        [tuple(row[c] for c in columns) for row in rows],
    )
    return len(rows)


async def list_dead_letters(db: Db, f: DeadLetterFilter) -> list[DeadLetter]:
    where: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("topic", f.topic),
        ("error_type", f.error_type),
        ("consumer_service", f.service),
        ("event_type", f.event_type),
        ("status", f.status),
    ):
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    args.append(f.limit)
    rows = await db.fetch(
        f"SELECT {_SELECT_LETTER} FROM dead_letters "
        f"{'WHERE ' + ' AND '.join(where) if where else ''} "
        f'ORDER BY received_at DESC, topic, partition, "offset" DESC LIMIT ${len(args)}',
        *args,
    )
    return [_letter(r) for r in rows]


async def get_dead_letter(db: Db, ref: RecordRef, *, lock: bool = False) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        f"""SELECT {_SELECT_LETTER}, record_key, record_value, header_keys, header_values
            FROM dead_letters WHERE topic = $1 AND partition = $2 AND "offset" = $3
            {"FOR UPDATE" if lock else ""}""",
        ref.topic,
        ref.partition,
        ref.offset,
    )
    return row


def letter_of(row: asyncpg.Record) -> DeadLetter:
    return _letter(row)


async def set_status(
    conn: Conn, refs: list[RecordRef], status: str, who: str, at: datetime
) -> None:
    await conn.executemany(
        """UPDATE dead_letters
           SET status = $4, status_at = $5, status_by = $6,
               redrives = redrives + CASE WHEN $4 = 'redriven' THEN 1 ELSE 0 END
           WHERE topic = $1 AND partition = $2 AND "offset" = $3""",
        [(r.topic, r.partition, r.offset, status, at, who) for r in refs],
    )


async def open_counts(db: Db) -> dict[str, int]:
    rows = await db.fetch(
        "SELECT topic, count(*) AS n FROM dead_letters WHERE status = 'open' GROUP BY topic"
    )
    return {r["topic"]: r["n"] for r in rows}


# --- audit ----------------------------------------------------------------------------


async def append_audit(
    conn: Conn,
    *,
    who: str,
    action: str,
    reason: str,
    forced: bool,
    records: list[dict[str, Any]],
) -> tuple[int, datetime]:
    row = await conn.fetchrow(
        """INSERT INTO audit (who, action, reason, forced, records)
           VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING id, at""",
        who,
        action,
        reason,
        forced,
        orjson.dumps(records).decode(),
    )
    assert row is not None
    return row["id"], row["at"]


async def list_audit(db: Db, limit: int) -> list[AuditEntry]:
    rows = await db.fetch("SELECT * FROM audit ORDER BY id DESC LIMIT $1", limit)
    return [
        AuditEntry(
            id=r["id"],
            at=r["at"],
            who=r["who"],
            action=r["action"],
            reason=r["reason"],
            forced=r["forced"],
            records=orjson.loads(r["records"]),
        )
        for r in rows
    ]


# --- lag ------------------------------------------------------------------------------


async def record_lag(
    pool: asyncpg.Pool, at: datetime, rows: list[PartitionLag], keep_hours: float
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            """INSERT INTO lag_samples (at, group_id, topic, partition, lag)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
            [(at, r.group, r.topic, r.partition, r.lag) for r in rows],
        )
        await conn.execute(
            "DELETE FROM lag_samples WHERE at < $1::timestamptz - $2 * interval '1 hour'",
            at,
            keep_hours,
        )


async def lag_history(db: Db, group: str, topic: str, since: datetime) -> list[LagPoint]:
    rows = await db.fetch(
        """SELECT at, sum(lag)::bigint AS lag FROM lag_samples
           WHERE group_id = $1 AND topic = $2 AND at >= $3
           GROUP BY at ORDER BY at""",
        group,
        topic,
        since,
    )
    return [LagPoint(at=r["at"], lag=r["lag"]) for r in rows]


# --- referral health ------------------------------------------------------------------


async def record_overdue(conn: Conn, row: dict[str, Any]) -> None:
    """The referral's highest escalation so far, unless it has ended."""
    await conn.execute(
        """INSERT INTO overdue_referrals (referral_id, case_id, reference, to_agency_id,
                                          service_type, deadline, due_at, escalation_level)
           SELECT $1, $2, $3, $4, $5, $6, $7, $8
           WHERE NOT EXISTS (SELECT 1 FROM ended_referrals WHERE referral_id = $1)
           ON CONFLICT (referral_id) DO UPDATE
           SET escalation_level = GREATEST(overdue_referrals.escalation_level,
                                           EXCLUDED.escalation_level),
               deadline = EXCLUDED.deadline, due_at = EXCLUDED.due_at,
               to_agency_id = EXCLUDED.to_agency_id""",
        row["referral_id"],
        row["case_id"],
        row["reference"],
        row["to_agency_id"],
        row["service_type"],
        row["deadline"],
        row["due_at"],
        row["escalation_level"],
    )


async def end_referral(conn: Conn, referral_id: Any, state: str, at: datetime) -> None:
    await conn.execute("DELETE FROM overdue_referrals WHERE referral_id = $1", referral_id)
    await conn.execute(
        """INSERT INTO ended_referrals (referral_id, state, ended_at) VALUES ($1, $2, $3)
           ON CONFLICT (referral_id) DO NOTHING""",
        referral_id,
        state,
        at,
    )


async def record_unmet_need(conn: Conn, row: dict[str, Any]) -> None:
    await conn.execute(
        """INSERT INTO unmet_needs (event_id, case_id, service_type, country, region, reason,
                                    occurred_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
        *(row[c] for c in ("event_id", "case_id", "service_type", "country", "region")),
        row["reason"],
        row["occurred_at"],
    )


async def record_notification_failure(conn: Conn, row: dict[str, Any]) -> None:
    await conn.execute(
        """INSERT INTO notification_failures (event_id, case_id, notification_id, channel,
                                              error_code, permanent, failed_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
        *(row[c] for c in ("event_id", "case_id", "notification_id", "channel")),
        row["error_code"],
        row["permanent"],
        row["failed_at"],
    )


async def overdue_counts(db: Db) -> list[OverdueCount]:
    rows = await db.fetch(
        """SELECT escalation_level, to_agency_id, count(*) AS n FROM overdue_referrals
           GROUP BY 1, 2 ORDER BY 1 DESC, 3 DESC, 2"""
    )
    return [OverdueCount(escalation_level=r[0], agency=r[1], referrals=r["n"]) for r in rows]


async def unmet_need_counts(db: Db, since: datetime) -> list[UnmetNeedCount]:
    rows = await db.fetch(
        """SELECT country, region, service_type, count(DISTINCT case_id) AS cases,
                  count(*) AS events
           FROM unmet_needs WHERE occurred_at >= $1
           GROUP BY 1, 2, 3 ORDER BY cases DESC, 1, 2, 3""",
        since,
    )
    return [
        UnmetNeedCount(
            country=r["country"],
            region=r["region"],
            service_type=r["service_type"],
            cases=r["cases"],
            events=r["events"],
        )
        for r in rows
    ]


async def failed_notification_counts(db: Db, since: datetime) -> list[FailedNotificationCount]:
    rows = await db.fetch(
        """SELECT channel, error_code,
                  count(*) FILTER (WHERE permanent) AS permanent,
                  count(*) FILTER (WHERE NOT permanent) AS retrying
           FROM notification_failures WHERE failed_at >= $1
           GROUP BY 1, 2 ORDER BY 3 DESC, 4 DESC, 1, 2""",
        since,
    )
    return [
        FailedNotificationCount(
            channel=r["channel"],
            reason=r["error_code"],
            permanent=r["permanent"],
            retrying=r["retrying"],
        )
        for r in rows
    ]
