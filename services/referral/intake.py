"""Intake's internal identity API, as the read-referral use case needs it: the
child's identifying details for one audited disclosure, or why there are none.

Intake answers only this service's key (ENLACE_INTERNAL_API_KEY, the principal
intake's ENLACE_IDENTITY_PRINCIPAL names), and only while it holds a grant for the
receiving agency, learnt from this service's own referral events: the referral id
sent here must be the grant's.

This is the only place referral speaks HTTP to another service. The use case sees
the `IdentitySource` port (services/referral/commands/context.py); tests may give
it any object with the same method.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from services.kit.logging import get_logger
from services.referral.domain.disclosure import Identity, IdentityRequest, IdentityStatus

log = get_logger(__name__)


class IntakeIdentities:
    def __init__(self, client: Callable[[], httpx.AsyncClient], internal_api_key: str) -> None:
        self._client = client
        self._key = internal_api_key

    async def identity(self, request: IdentityRequest) -> Identity | IdentityStatus:
        try:
            answer = await self._client().get(
                f"/internal/v1/cases/{request.case_id}/identity",
                params={
                    "on_behalf_of": request.on_behalf_of,
                    "purpose": request.purpose,
                    "referral_id": str(request.referral_id),
                },
                headers={"Authorization": f"Bearer {self._key}"},
            )
        except httpx.HTTPError as exc:
            log.warning(
                "intake unreachable for a disclosure",
                error=exc.__class__.__name__,
                referral_id=str(request.referral_id),
            )
            return IdentityStatus.UNAVAILABLE
        if answer.status_code == 409:
            return IdentityStatus.CONSENT_WITHDRAWN
        if answer.status_code == 410:  # erased in intake before referral heard of it
            return IdentityStatus.ERASED
        if answer.status_code == 403:
            # Intake holds no live grant for this agency and referral: it has not yet
            # consumed the acceptance (try again shortly), or the grant has ended.
            log.warning("intake holds no grant", referral_id=str(request.referral_id))
            return IdentityStatus.UNAVAILABLE
        if answer.status_code != 200:
            log.warning(
                "intake refused a disclosure",
                status=answer.status_code,
                referral_id=str(request.referral_id),
            )
            return IdentityStatus.UNAVAILABLE
        body = answer.json()
        return Identity(
            child=body["child"], location=body["location"], guardian=body.get("guardian")
        )
