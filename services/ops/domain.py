"""Operations' pure rules and the shapes its use cases return (no I/O): what a dead
letter says about itself, what a redriven copy carries, lag, and the views the JSON
API, the command line and the console show."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from contracts.topics import DLQ_SUFFIX, Topic, all_topic_names
from services.kit.dead_letter import (
    DEAD_LETTER_HEADER_PREFIXES,
    REDRIVEN_AT,
    REDRIVEN_BY,
)
from services.kit.errors import InvalidField

Status = Literal["open", "redriven", "discarded"]
STATUSES: tuple[Status, ...] = ("open", "redriven", "discarded")
DLQ_TOPICS = tuple(t.dlq for t in Topic)
CONTRACT_TOPICS = tuple(t.value for t in Topic)
REDRIVEN_FROM = "x-redriven-from"


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- topics -------------------------------------------------------------------------------


def physical(namespace: str, topic: str) -> str:
    return f"{namespace}.{topic}" if namespace else topic


def contract_topic(namespace: str, name: str) -> str | None:
    """The contract name of a physical topic of this namespace; None for any other."""
    if namespace:
        if not name.startswith(f"{namespace}."):
            return None
        name = name[len(namespace) + 1 :]
    return name if name in all_topic_names() else None


def original_of(dlq_topic: str) -> str:
    """The contract topic a .dlq twin holds the refusals of."""
    return dlq_topic.removesuffix(DLQ_SUFFIX)


# --- dead letters ---------------------------------------------------------------------


class RecordRef(View):
    """One dead letter: its position on a .dlq topic (contract name)."""

    topic: str = Field(description="The .dlq topic, e.g. protection.referrals.v1.dlq")
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str, field: str = "records") -> RecordRef:
        """`topic:partition:offset`, as the command line takes it."""
        topic, _, rest = text.rpartition(":")
        topic, _, partition = topic.rpartition(":")
        try:
            ref = cls(topic=topic, partition=int(partition), offset=int(rest))
        except ValueError:
            raise InvalidField(field, f"{text!r} is not <dlq topic>:<partition>:<offset>") from None
        return ref.checked(field)

    def checked(self, field: str = "records") -> RecordRef:
        if self.topic not in DLQ_TOPICS:
            raise InvalidField(field, f"{self.topic!r} is not one of {', '.join(DLQ_TOPICS)}")
        return self


class DeadLetter(View):
    topic: str
    partition: int
    offset: int
    received_at: datetime
    error_type: str
    error_message: str
    attempts: int | None
    consumer_service: str
    consumer_group: str
    original_topic: str
    original_partition: int | None
    original_offset: int | None
    event_id: str | None
    event_type: str
    event_source: str | None
    case_id: str | None
    case_reference: str | None
    status: Status
    status_at: datetime | None
    status_by: str | None
    redrives: int


class DeadLetterDetail(View):
    letter: DeadLetter
    key: str | None
    headers: list[tuple[str, str]]
    value: Any = Field(description="The record's value: JSON, or its text when not JSON")


class DeadLetterFilter(View):
    topic: str | None = None
    error_type: str | None = None
    service: str | None = Field(default=None, description="The refusing service")
    event_type: str | None = None
    status: Status | None = None
    limit: int = Field(default=200, ge=1, le=1000)


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", errors="replace")


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def describe(
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]],
) -> dict[str, Any]:
    """What a DLQ record says about itself (its x-error-*, x-original-*, x-consumer-*
    and CloudEvents headers, the case reference of its value): the columns it is
    listed and filtered by."""
    h: dict[str, str | None] = {}
    for name, raw in headers:
        h[name] = _text(raw)  # the last of a repeated header wins (a re-dead-letter)
    reference = None
    try:
        body = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("reference"), str):
        reference = body["reference"][:100]
    return {
        "error_type": h.get("x-error-type") or "unknown",
        "error_message": (h.get("x-error-message") or "")[:2000],
        "attempts": _int(h.get("x-error-attempts")),
        "consumer_service": h.get("x-consumer-service") or "unknown",
        "consumer_group": h.get("x-consumer-group") or "",
        "original_topic": original_of(topic),
        "original_partition": _int(h.get("x-original-partition")),
        "original_offset": _int(h.get("x-original-offset")),
        "event_id": h.get("ce_id"),
        "event_type": h.get("ce_type") or "undecodable",
        "event_source": h.get("ce_source"),
        "case_id": h.get("ce_subject") or _text(key),
        "case_reference": reference,
    }


def redrive_headers(
    headers: list[tuple[str, bytes]], *, who: str, at: datetime, ref: RecordRef
) -> list[tuple[str, bytes]]:
    """The original record's headers (CloudEvents attributes, content type, trace),
    without what dead-lettering added, plus who redrove it, when and from where."""
    kept = [(k, v) for k, v in headers if not k.startswith(DEAD_LETTER_HEADER_PREFIXES)]
    return [
        *kept,
        (REDRIVEN_BY, who.encode()),
        (REDRIVEN_AT, at.isoformat().encode()),
        (REDRIVEN_FROM, str(ref).encode()),
    ]


def value_view(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value.decode("utf-8", errors="replace")


class ActionResult(View):
    action: Literal["redrive", "discard"]
    audit_id: int
    who: str
    at: datetime
    records: list[RecordRef]
    forced: bool


class AuditEntry(View):
    id: int
    at: datetime
    who: str
    action: str
    reason: str
    forced: bool
    records: list[dict[str, Any]]


# --- lag ------------------------------------------------------------------------------


class PartitionLag(View):
    group: str
    topic: str
    partition: int
    committed: int
    end: int
    lag: int


def lag(committed: int, end: int) -> int:
    """Messages the group has not consumed yet (never negative: a committed offset can
    pass an end offset read a moment earlier)."""
    return max(0, end - max(committed, 0))


class GroupLag(View):
    group: str
    topic: str
    lag: int
    partitions: list[PartitionLag]


def by_group(rows: list[PartitionLag]) -> list[GroupLag]:
    groups: dict[tuple[str, str], list[PartitionLag]] = {}
    for row in rows:
        groups.setdefault((row.group, row.topic), []).append(row)
    return [
        GroupLag(
            group=g,
            topic=t,
            lag=sum(p.lag for p in parts),
            partitions=sorted(parts, key=lambda p: p.partition),
        )
        for (g, t), parts in sorted(groups.items())
    ]


class LagPoint(View):
    at: datetime
    lag: int


class LagHistory(View):
    group: str
    topic: str
    since: datetime
    points: list[LagPoint]


# --- pipeline -------------------------------------------------------------------------


class LoopState(View):
    status: str
    needed: bool
    restarts: int
    last_error: str | None


class ServiceHealth(View):
    service: str
    url: str
    reachable: bool
    ready: bool
    checks: dict[str, bool]
    loops: dict[str, LoopState]
    outbox_backlog: float | None
    outbox_oldest_age_seconds: float | None
    error: str | None = None


class Pipeline(View):
    at: datetime
    services: list[ServiceHealth]
    lag: list[GroupLag]
    lag_error: str | None
    dead_letters: dict[str, int] = Field(description="Open dead letters per .dlq topic")


# --- referral health ------------------------------------------------------------------


class OverdueCount(View):
    escalation_level: int
    agency: str
    referrals: int


class UnmetNeedCount(View):
    country: str
    region: str
    service_type: str
    cases: int
    events: int


class FailedNotificationCount(View):
    channel: str
    reason: str
    permanent: int
    retrying: int


class ReferralHealth(View):
    at: datetime
    overdue: list[OverdueCount]
    unmet_needs: list[UnmetNeedCount]
    unmet_needs_since: datetime
    failed_notifications: list[FailedNotificationCount]
    failed_notifications_since: datetime
