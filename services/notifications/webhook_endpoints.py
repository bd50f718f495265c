"""Use cases of the webhook endpoints an agency manages: register (the secret is made
here and shown once), list, read, change (URL, event types, enabled), delete, rotate
the secret with an overlap, read an endpoint's delivery log, redeliver. An agency
sees only its own endpoints: another's look missing, exactly as none.

The URL rule (`UrlPolicy`): outside the local profile, https only, and the host must
resolve to public addresses only, checked here at registration and again at every
connection (channels.webhook.PublicOnlyResolver)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import asyncpg

from services.kit.db import Conn
from services.kit.errors import Conflict, Gone, InvalidField, NotFound
from services.notifications import store
from services.notifications.channels.webhook import new_secret, resolves_publicly
from services.notifications.domain.partners import PARTNER_EVENT_TYPES, url_problem
from services.notifications.endpoint_secrets import SecretBox
from services.notifications.store import webhooks as hooks

# What an endpoint's view shows (never a secret).
VIEW_FIELDS = (
    "endpoint_id",
    "url",
    "description",
    "event_types",
    "enabled",
    "disabled_reason",
    "failing_since",
    "paused_until",
    "previous_secret_expires_at",
    "created_at",
    "updated_at",
)
LOG_FIELDS = (
    "notification_id",
    "source_event_id",
    "event_type",
    "case_id",
    "status",
    "attempts",
    "response_status",
    "error_code",
    "next_attempt_at",
    "created_at",
    "sent_at",
    "updated_at",
)


@dataclass(frozen=True)
class UrlPolicy:
    public_https_only: bool

    async def check(self, url: str) -> None:
        problem = url_problem(url, public_https_only=self.public_https_only)
        if problem is None and self.public_https_only:
            host = urlsplit(url).hostname or ""
            if not await resolves_publicly(host):
                problem = "must resolve to public addresses only"
        if problem is not None:
            raise InvalidField("url", problem)


def check_event_types(event_types: list[str]) -> list[str]:
    unknown = sorted(set(event_types) - set(PARTNER_EVENT_TYPES))
    if unknown:
        raise InvalidField(
            "event_types",
            f"unknown event types {', '.join(unknown)}; known: {', '.join(PARTNER_EVENT_TYPES)}",
        )
    if not event_types:
        raise InvalidField("event_types", "at least one event type")
    return sorted(set(event_types))


def view(row: asyncpg.Record) -> dict[str, Any]:
    return {name: row[name] for name in VIEW_FIELDS} | {
        "webhook_id_prefix": "msg_",
        "rotation_overlap": row["previous_secret_expires_at"] is not None,
    }


@dataclass(frozen=True)
class RegisterEndpoint:
    agency_id: str
    url: str
    event_types: list[str]
    description: str = ""
    enabled: bool = True


async def register(
    conn: Conn, command: RegisterEndpoint, *, policy: UrlPolicy, box: SecretBox, now: datetime
) -> tuple[dict[str, Any], str]:
    """The new endpoint's view and its secret (shown to the agency this once)."""
    event_types = check_event_types(command.event_types)
    await policy.check(command.url)
    endpoint_id = uuid4()
    secret = new_secret()
    row = await hooks.insert_endpoint(
        conn,
        endpoint_id=endpoint_id,
        agency_id=command.agency_id,
        url=command.url,
        description=command.description,
        event_types=event_types,
        enabled=command.enabled,
        secret=box.seal(endpoint_id, secret),
        now=now,
    )
    return view(row), secret


async def list_endpoints(conn: Conn, agency_id: str) -> list[dict[str, Any]]:
    return [view(r) for r in await hooks.agency_endpoints(conn, agency_id)]


async def _own(conn: Conn, endpoint_id: UUID, agency_id: str, *, lock: bool = False) -> Any:
    row = await hooks.endpoint(conn, endpoint_id, agency_id, lock=lock)
    if row is None:
        raise NotFound("webhook endpoint")
    return row


async def read(conn: Conn, endpoint_id: UUID, agency_id: str) -> dict[str, Any]:
    return view(await _own(conn, endpoint_id, agency_id))


@dataclass(frozen=True)
class ChangeEndpoint:
    agency_id: str
    endpoint_id: UUID
    url: str | None = None
    event_types: list[str] | None = None
    description: str | None = None
    enabled: bool | None = None


async def change(
    conn: Conn, command: ChangeEndpoint, *, policy: UrlPolicy, now: datetime
) -> dict[str, Any]:
    """Only what the command gives changes. Enabling again sends what was held, and
    clears the failure and pause history (a fresh start)."""
    async with conn.transaction():
        row = await _own(conn, command.endpoint_id, command.agency_id, lock=True)
        changes: dict[str, Any] = {}
        if command.url is not None and command.url != row["url"]:
            await policy.check(command.url)
            changes["url"] = command.url
        if command.event_types is not None:
            changes["event_types"] = check_event_types(command.event_types)
        if command.description is not None:
            changes["description"] = command.description
        if command.enabled is not None and command.enabled != row["enabled"]:
            changes["enabled"] = command.enabled
            changes["disabled_reason"] = None if command.enabled else "agency"
            if command.enabled:
                changes["failing_since"] = None
                changes["paused_until"] = None
        if not changes:
            return view(row)
        updated = await hooks.update_endpoint(conn, command.endpoint_id, changes, now)
        if changes.get("enabled") is True:
            await hooks.release_deliveries(conn, command.endpoint_id, now)
        elif changes.get("enabled") is False:
            await hooks.hold_deliveries(conn, command.endpoint_id, now)
        return view(updated)


async def delete(conn: Conn, endpoint_id: UUID, agency_id: str, *, now: datetime) -> None:
    async with conn.transaction():
        await _own(conn, endpoint_id, agency_id, lock=True)
        await hooks.delete_endpoint(conn, endpoint_id, now)


async def rotate_secret(
    conn: Conn,
    endpoint_id: UUID,
    agency_id: str,
    *,
    overlap: timedelta,
    box: SecretBox,
    now: datetime,
) -> tuple[dict[str, Any], str]:
    """A new secret signs from now on; the current one keeps signing beside it for
    `overlap` (both signatures are sent), so the receiver can switch without a gap."""
    async with conn.transaction():
        row = await _own(conn, endpoint_id, agency_id, lock=True)
        secret = new_secret()
        updated = await hooks.update_endpoint(
            conn,
            endpoint_id,
            {
                "secret": box.seal(endpoint_id, secret),
                "previous_secret": row["secret"] if overlap > timedelta(0) else None,
                "previous_secret_expires_at": now + overlap if overlap > timedelta(0) else None,
            },
            now,
        )
    return view(updated), secret


async def delivery_log(
    conn: Conn, endpoint_id: UUID, agency_id: str, *, limit: int, status: str | None
) -> list[dict[str, Any]]:
    await _own(conn, endpoint_id, agency_id)
    rows = await hooks.endpoint_deliveries(conn, endpoint_id, limit=limit, status=status)
    return [{name: r[name] for name in LOG_FIELDS} for r in rows]


async def redeliver(
    conn: Conn, endpoint_id: UUID, delivery_id: UUID, agency_id: str, *, now: datetime
) -> dict[str, Any]:
    """Send a finished delivery again (same webhook-id: the receiver dedupes)."""
    async with conn.transaction():
        row = await _own(conn, endpoint_id, agency_id)
        if not row["enabled"]:
            raise Conflict(
                "Endpoint disabled", "Enable the endpoint first: its deliveries are held."
            )
        if await hooks.source_is_erased(conn, delivery_id, store.ERASED_MARK):
            raise Gone("Erased", "The case of this delivery was erased; its event is gone.")
        again = await hooks.redeliver(conn, endpoint_id, delivery_id, now)
        if again is None:
            raise NotFound("delivery")
        return {"notification_id": again["notification_id"], "status": again["status"]}
