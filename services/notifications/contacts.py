"""Contact resolution at send time: a directory recipient from the current contact
book (so an edit made in referral's directory reaches the next send), a caseworker
from intake's internal endpoint, cached in the database (a stale copy is used while
intake is unreachable)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import asyncpg
import httpx

from services.kit.clock import Clock
from services.notifications import store
from services.notifications.channels import PermanentSendError, TransientSendError
from services.notifications.domain.recipients import Contact, ContactBook, RecipientKind


class ContactResolver:
    def __init__(
        self,
        *,
        intake: httpx.AsyncClient,
        api_key: str,
        pool: Callable[[], asyncpg.Pool],
        clock: Clock,
        cache_seconds: float,
    ) -> None:
        self._intake = intake
        self._api_key = api_key
        self._pool = pool
        self._clock = clock
        self._cache_for = timedelta(seconds=cache_seconds)

    async def resolve(
        self, kind: RecipientKind, agency_id: str, ref: str, *, book: ContactBook
    ) -> Contact:
        if kind is RecipientKind.DIRECTORY:
            contact = book.contact(ref)
            if contact is None:
                raise PermanentSendError("unknown_recipient", "not in the directory")
            return contact
        return await self._caseworker(agency_id, ref)

    async def _caseworker(self, agency_id: str, staff_id: str) -> Contact:
        cached = await store.cached_contact(self._pool(), agency_id, staff_id)
        if cached is not None and self._clock.now() - cached["fetched_at"] < self._cache_for:
            return _caseworker_contact(cached["contact"])
        try:
            response = await self._intake.get(
                f"/internal/v1/caseworkers/{agency_id}/{staff_id}",
                headers={"Authorization": f"Bearer {self._api_key}"},
            )
        except httpx.HTTPError as exc:
            if cached is not None:
                return _caseworker_contact(cached["contact"])
            raise TransientSendError("intake_unavailable", exc.__class__.__name__) from exc
        if response.status_code == 404:
            raise PermanentSendError("unknown_caseworker")
        if response.status_code != 200:
            if cached is not None:
                return _caseworker_contact(cached["contact"])
            raise TransientSendError(f"intake_http_{response.status_code}")
        payload: dict[str, Any] = response.json()
        await store.cache_contact(self._pool(), agency_id, staff_id, payload, self._clock.now())
        return _caseworker_contact(payload)


def _caseworker_contact(payload: dict[str, Any]) -> Contact:
    return Contact(
        id=str(payload.get("id", "")),
        name=str(payload.get("name") or ""),
        phone=payload.get("phone") or None,
        email=payload.get("email") or None,
        language=str(payload.get("language") or ""),
        time_zone=str(payload.get("time_zone") or "UTC"),
    )
