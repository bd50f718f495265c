"""HTTP API, mapped onto `commands`: the delivery log an agency may read for its own
cases, and the SMS provider's status callback (authenticated by its request
signature, not by an agency key). Domain errors become problem responses in the kit."""

import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Query, Request, Response

from services.kit.clock import Clock
from services.kit.group_commit import GroupCommit
from services.kit.http import Agency, Problem, Role, roles_dependency
from services.kit.logging import get_logger
from services.kit.openapi import problems
from services.notifications import commands
from services.notifications.channels.sms import signature_is_valid

log = get_logger(__name__)


# What a provider's callback carries, checked once its signature is: anything else is
# 400 naming the parameter, never stored.
CALLBACK_FIELDS: dict[str, re.Pattern[str]] = {
    "MessageSid": re.compile(r"^[A-Za-z0-9]{2,64}$"),
    "MessageStatus": re.compile(r"^[a-z_]{1,32}$"),
    "ErrorCode": re.compile(r"^[0-9]{1,8}$"),
}
STATUS_CALLBACK_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "required": ["MessageSid", "MessageStatus"],
                "properties": {
                    name: {"type": "string", "pattern": pattern.pattern}
                    for name, pattern in CALLBACK_FIELDS.items()
                },
            },
            "example": {"MessageSid": "SM0f4c2e9b1d", "MessageStatus": "delivered"},
        }
    },
}


def build_router(
    pool: Callable[[], asyncpg.Pool],
    current_agency: Callable[..., Awaitable[Agency]],
    *,
    clock: Clock,
    source: str,
    status_callback_url: str,
    sms_auth_token: str,
) -> APIRouter:
    router = APIRouter()

    async def apply_reports(reports: list[commands.SmsStatusReport]) -> None:
        async with pool().acquire() as conn:
            await commands.apply_sms_status_reports(conn, reports, now=clock.now(), source=source)

    # Status callbacks come in bursts (two per SMS, more when a provider catches up):
    # those that arrive while one transaction is written go together in the next, so
    # they hold one database connection, never the delivery worker's or consumers'.
    status_reports = GroupCommit(apply_reports)
    partner = roles_dependency(current_agency, Role.AGENCY)  # service, operator keys: 403

    @router.get(
        "/v1/notifications",
        tags=["notifications"],
        summary="Delivery log of one of the caller's cases (no message bodies)",
        responses=problems(
            403,
            404,
            s403="Not an agency key (a service or operator key)",
            s404="No notification of this agency for that case",
        ),
    )
    async def delivery_log(
        agency: Annotated[Agency, Depends(partner)],
        case_id: Annotated[UUID, Query(description="The case whose notifications to list")],
    ) -> dict[str, Any]:
        async with pool().acquire() as conn:
            entries = await commands.read_delivery_log(
                conn, commands.ReadDeliveryLog(case_id, agency.id)
            )
        return {
            "case_id": str(case_id),
            "notifications": [{k: _json(v) for k, v in entry.items()} for entry in entries],
        }

    @router.post(
        "/v1/sms/status",
        tags=["providers"],
        status_code=204,
        summary="SMS provider status callback (Twilio-signed)",
        responses=problems(
            400,
            403,
            s400="MessageSid or MessageStatus is missing, or a parameter is malformed",
            s403="X-Twilio-Signature does not match this request",
        ),
        openapi_extra={"requestBody": STATUS_CALLBACK_BODY},
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
        malformed = [
            name
            for name, pattern in CALLBACK_FIELDS.items()
            if params.get(name) and not pattern.fullmatch(params[name])
        ]
        if malformed:
            raise Problem(
                400,
                "Invalid callback",
                "Parameters are malformed.",
                errors=[{"field": f"body.{name}", "message": "malformed"} for name in malformed],
            )
        code = params.get("ErrorCode")
        report = commands.SmsStatusReport(
            provider_message_id=sid,
            status=status,
            error_code=f"twilio_{code}" if code and code.isdigit() else None,
        )
        await status_reports.submit(report)
        return Response(status_code=204)

    return router


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value
