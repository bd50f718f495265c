"""The console's routes. Sign-in takes an operations key through a form and gives a
session cookie (`session.py`); every page needs that session (else: back to sign-in)
and every action (redrive, discard, sign-out) its CSRF token and a same-site Origin.
Each page only calls the use cases (`services.ops.commands.Operations`) and renders
what they return; the actions are audited by the use cases with the signed-in
operator as `who`."""

from __future__ import annotations

from typing import Annotated, get_args

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from services.kit.errors import DomainError, InvalidField
from services.kit.http import AgencyRegistry, Role
from services.kit.throttle import AuthThrottle
from services.ops.commands import Operations
from services.ops.domain import DLQ_TOPICS, DeadLetterFilter, RecordRef, Status
from services.ops.web.chart import lag_chart
from services.ops.web.pages import HEADERS, STATIC, page, redirect
from services.ops.web.session import COOKIE, Session, Sessions

NOTICES = {
    "redriven": "Redriven to the original topic; the audit names you.",
    "discarded": "Discarded; the audit names you and your reason.",
}
Text = Annotated[str, Query(max_length=200)]


def build_web_router(
    ops: Operations, agencies: AgencyRegistry, throttle: AuthThrottle, sessions: Sessions
) -> APIRouter:
    router = APIRouter(prefix="/console", include_in_schema=False)

    def current(request: Request) -> Session | None:
        return sessions.read(request.cookies.get(COOKIE))

    def same_site(request: Request) -> bool:
        origin = request.headers.get("origin")
        return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"

    async def letters_page(
        session: Session,
        filters: DeadLetterFilter,
        *,
        status: int = 200,
        flash: str | None = None,
        flash_kind: str = "",
    ) -> Response:
        return page(
            "dead_letters.html",
            status,
            title="Dead letters",
            page="dead-letters",
            session=session,
            letters=await ops.list_dead_letters(filters),
            filters=filters,
            topics=DLQ_TOPICS,
            statuses=get_args(Status),
            flash=flash,
            flash_kind=flash_kind,
        )

    def refused(session: Session | None, message: str) -> Response:
        return page("error.html", 403, title="Refused", session=session, message=message)

    @router.get("/static/console.css")
    async def stylesheet() -> Response:
        return Response(
            (STATIC / "console.css").read_bytes(), media_type="text/css", headers=HEADERS
        )

    @router.get("")
    @router.get("/")
    async def home(request: Request) -> Response:
        return redirect("/console/pipeline" if current(request) else "/console/sign-in")

    @router.get("/sign-in")
    async def sign_in_form(request: Request) -> Response:
        return page("sign_in.html", title="Sign in", session=None)

    @router.post("/sign-in")
    async def sign_in(request: Request, api_key: Annotated[str, Form(max_length=200)]) -> Response:
        address = request.client.host if request.client else "unknown"
        wait = throttle.retry_after(address)
        if wait is not None:
            return page(
                "sign_in.html",
                429,
                title="Sign in",
                session=None,
                flash=f"Too many failed sign-ins from this address; try again in {wait} s.",
                flash_kind="error",
            )
        principal = agencies.authenticate(api_key)
        if principal is None or principal.role is not Role.OPERATIONS:
            throttle.failed(address)
            message = (
                "The key is not recognised."
                if principal is None
                else "Only operations keys may enter the console."
            )
            status = 401 if principal is None else 403
            return page(
                "sign_in.html",
                status,
                title="Sign in",
                session=None,
                flash=message,
                flash_kind="error",
            )
        _, cookie = sessions.issue(principal.id)
        answer = redirect("/console/pipeline")
        answer.set_cookie(
            COOKIE,
            cookie,
            max_age=sessions.lifetime,
            path="/console",
            httponly=True,
            samesite="strict",
            secure=sessions.secure,
        )
        return answer

    @router.post("/sign-out")
    async def sign_out(request: Request, csrf: Annotated[str, Form(max_length=100)]) -> Response:
        session = current(request)
        if session is not None and not (sessions.csrf_ok(session, csrf) and same_site(request)):
            return refused(session, "This form is stale or came from another site.")
        answer = redirect("/console/sign-in")
        answer.delete_cookie(COOKIE, path="/console")
        return answer

    @router.get("/pipeline")
    async def pipeline(request: Request) -> Response:
        session = current(request)
        if session is None:
            return redirect("/console/sign-in")
        view = await ops.pipeline()
        charts = {
            (g.group, g.topic): lag_chart(
                [(p.at, p.lag) for p in (await ops.lag_history(g.group, g.topic)).points]
            )
            for g in view.lag
        }
        return page(
            "pipeline.html",
            title="Pipeline",
            page="pipeline",
            session=session,
            view=view,
            charts=charts,
        )

    @router.get("/dead-letters")
    async def dead_letters(
        request: Request,
        topic: Text = "",
        error_type: Text = "",
        service: Text = "",
        event_type: Text = "",
        status: Text = "open",
        notice: Text = "",
    ) -> Response:
        session = current(request)
        if session is None:
            return redirect("/console/sign-in")
        filters = DeadLetterFilter(
            topic=topic or None,
            error_type=error_type or None,
            service=service or None,
            event_type=event_type or None,
            status=status if status in ("open", "redriven", "discarded") else None,  # type: ignore[arg-type]
        )
        return await letters_page(session, filters, flash=NOTICES.get(notice))

    @router.get("/dead-letters/{topic}/{partition}/{offset}")
    async def dead_letter(request: Request, topic: str, partition: int, offset: int) -> Response:
        session = current(request)
        if session is None:
            return redirect("/console/sign-in")
        try:
            ref = RecordRef(topic=topic, partition=partition, offset=offset).checked()
            detail = await ops.show_dead_letter(ref)
        except (DomainError, ValueError):
            return page(
                "error.html",
                404,
                title="Not found",
                session=session,
                message="No such dead letter.",
            )
        return page(
            "dead_letter.html",
            title="Dead letter",
            page="dead-letters",
            session=session,
            detail=detail,
            ref=ref,
        )

    @router.post("/dead-letters/action")
    async def act(
        request: Request,
        csrf: Annotated[str, Form(max_length=100)],
        action: Annotated[str, Form(max_length=20)],
        records: Annotated[list[str] | None, Form()] = None,
        reason: Annotated[str, Form(max_length=2000)] = "",
        force: Annotated[bool, Form()] = False,
    ) -> Response:
        session = current(request)
        if session is None:
            return redirect("/console/sign-in")
        if not (sessions.csrf_ok(session, csrf) and same_site(request)):
            return refused(session, "This form is stale or came from another site.")
        try:
            if not records:
                raise InvalidField("records", "select at least one dead letter")
            refs = [RecordRef.parse(r) for r in records]
            if action == "redrive":
                await ops.redrive(refs, who=session.principal, reason=reason, force=force)
            elif action == "discard":
                await ops.discard(refs, who=session.principal, reason=reason, force=force)
            else:
                raise InvalidField("action", "redrive or discard")
        except DomainError as error:
            message = error.message if isinstance(error, InvalidField) else error.detail
            return await letters_page(
                session,
                DeadLetterFilter(status="open"),
                status=422 if isinstance(error, InvalidField) else 409,
                flash=f"Nothing done: {message or error.title}",
                flash_kind="error",
            )
        notice = "redriven" if action == "redrive" else "discarded"
        return redirect(f"/console/dead-letters?status=&notice={notice}")

    @router.get("/referral-health")
    async def referral_health(request: Request) -> Response:
        session = current(request)
        if session is None:
            return redirect("/console/sign-in")
        return page(
            "referral_health.html",
            title="Referral health",
            page="referral-health",
            session=session,
            health=await ops.referral_health(),
        )

    @router.get("/audit")
    async def audit(request: Request) -> Response:
        session = current(request)
        if session is None:
            return redirect("/console/sign-in")
        return page(
            "audit.html",
            title="Audit",
            page="audit",
            session=session,
            entries=await ops.audit(200),
        )

    return router
