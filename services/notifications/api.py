"""HTTP API: the delivery log an agency may read for its own cases, and the SMS
provider's status callback (authenticated by its request signature, not by an
agency key)."""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Query, Request, Response

from services.kit.clock import Clock
from services.kit.http import Agency, Problem, not_found
from services.kit.logging import get_logger
from services.notifications import store
from services.notifications.channels.sms import signature_is_valid
from services.notifications.worker import DeliveryWorker

log = get_logger(__name__)

LOG_FIELDS = (
    "notification_id",
    "source_event_id",
    "source_event_type",
    "recipient_id",
    "role",
    "channel",
    "status",
    "attempts",
    "provider",
    "provider_message_id",
    "provider_status",
    "error_code",
    "urgent",
    "next_attempt_at",
    "deferred_until",
    "created_at",
    "sent_at",
    "updated_at",
)


def build_router(
    pool: Callable[[], asyncpg.Pool],
    current_agency: Callable[..., Awaitable[Agency]],
    *,
    worker: DeliveryWorker,
    clock: Clock,
    status_callback_url: str,
    sms_auth_token: str,
) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/v1/notifications",
        tags=["notifications"],
        summary="Delivery log of one of the caller's cases (no message bodies)",
    )
    async def delivery_log(
        agency: Annotated[Agency, Depends(current_agency)],
        case_id: Annotated[UUID, Query(description="The case whose notifications to list")],
    ) -> dict[str, Any]:
        async with pool().acquire() as conn:
            if not await store.agency_owns_case(conn, case_id, agency.id):
                raise not_found("case")
            rows = await store.delivery_log(conn, case_id, agency.id)
        return {
            "case_id": str(case_id),
            "notifications": [{key: _json(row[key]) for key in LOG_FIELDS} for row in rows],
        }

    @router.post(
        "/v1/sms/status",
        tags=["providers"],
        status_code=204,
        summary="SMS provider status callback (Twilio-signed)",
    )
    async def sms_status(request: Request) -> Response:
        params = dict(
            parse_qsl((await request.body()).decode(errors="replace"), keep_blank_values=True)
        )
        signature = request.headers.get("x-twilio-signature")
        if not signature_is_valid(status_callback_url, params, signature, sms_auth_token):
            log.warning("status callback with a bad signature refused")
            raise Problem(
                403,
                "Invalid signature",
                "X-Twilio-Signature does not match this request.",
                errors=[{"field": "header.X-Twilio-Signature", "message": "signature mismatch"}],
            )
        sid, status = params.get("MessageSid", ""), params.get("MessageStatus", "")
        if not sid or not status:
            missing = [name for name in ("MessageSid", "MessageStatus") if not params.get(name)]
            raise Problem(
                400,
                "Invalid callback",
                "Required parameters are missing.",
                errors=[{"field": f"body.{name}", "message": "required"} for name in missing],
            )
        code = params.get("ErrorCode")
        error_code = f"twilio_{code}" if code and code.isdigit() else None
        now = clock.now()
        async with pool().acquire() as conn, conn.transaction():
            await store.lock_provider_messages(conn, [sid])
            await store.record_status_report(
                conn, provider_message_id=sid, status=status, error_code=error_code, now=now
            )
            await worker.apply_status_report(conn, sid, status, error_code, now)
        return Response(status_code=204)

    return router


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value
