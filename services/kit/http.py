"""HTTP plumbing shared by every API: agency authentication and RFC 9457 problem
responses that name the offending field (the middleware at the edge, body size and
input checks and security headers, is in `services.kit.edge`).

Every call is made by an authenticated principal (bearer API key; only the key's
SHA-256 is stored). A key has exactly one role: a partner agency's, an Enlace
service's (`internal`) or an operator's (`operations`). A request for another
agency's object must be answered exactly like a missing one: services raise
`not_found()` for both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.kit.errors import (
    Conflict,
    DomainError,
    Gone,
    InvalidField,
    NotFound,
    NotPermitted,
    StaleVersion,
    Unavailable,
)
from services.kit.logging import get_logger
from services.kit.principals import Agency as Agency
from services.kit.principals import AgencyConfig as AgencyConfig
from services.kit.principals import AgencyRegistry as AgencyRegistry
from services.kit.principals import Role as Role
from services.kit.principals import hash_api_key as hash_api_key
from services.kit.throttle import AuthThrottle
from services.kit.transient import HTTP_CANDIDATES, RETRY_AFTER_SECONDS, is_transient

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"


# --- principals (services/kit/principals.py): authentication and roles ------------------

_bearer = HTTPBearer(auto_error=False)


def agency_dependency(
    registry: AgencyRegistry, throttle: AuthThrottle | None = None
) -> Callable[..., Awaitable[Agency]]:
    """A FastAPI dependency that answers 401 unless a known principal's key is
    presented, and 429 (with Retry-After) instead once the client's address has failed
    too often (`services.kit.throttle`); a working key always passes."""

    def refuse(request: Request, problem: Problem) -> Problem:
        address = request.client.host if request.client else "unknown"
        if throttle is None:
            return problem
        wait = throttle.retry_after(address)
        if wait is not None:
            return Problem(
                429,
                "Too many failed authentications",
                f"Too many requests without a valid key from this address; retry in {wait} s.",
                headers={"Retry-After": str(wait)},
            )
        throttle.failed(address)
        return problem

    async def current_agency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> Agency:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise refuse(
                request,
                Problem(
                    401,
                    "Authentication required",
                    "Send the agency API key as 'Authorization: Bearer <key>'.",
                    headers={"WWW-Authenticate": "Bearer"},
                ),
            )
        agency = registry.authenticate(credentials.credentials)
        if agency is None:
            raise refuse(
                request,
                Problem(
                    401,
                    "Invalid API key",
                    "The API key is not recognised.",
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                ),
            )
        return agency

    return current_agency


def role_dependency(
    current_agency: Callable[..., Awaitable[Agency]], role: str
) -> Callable[..., Awaitable[Agency]]:
    """A dependency that admits only principals with `role` ("operations",
    "internal"); anyone else gets the same 404 as for a path that does not exist."""

    async def with_role(agency: Agency = Depends(current_agency)) -> Agency:  # noqa: B008
        if agency.role != role:
            raise not_found("resource")
        return agency

    return with_role


def service_principal_dependency(
    current_agency: Callable[..., Awaitable[Agency]],
    agencies: AgencyRegistry,
    principal_id: str,
    setting: str,
) -> Callable[..., Awaitable[Agency]]:
    """A dependency for an internal endpoint that one Enlace service alone calls: the
    internal principal `principal_id` (named by `setting`, checked against the
    agencies file now, at start). Anyone else, another service included, gets the
    same 404 as for a path that does not exist."""
    principal = agencies.get(principal_id)
    if principal is None or principal.role is not Role.INTERNAL:
        raise ValueError(
            f"{setting}: {principal_id!r} is not an internal principal of the agencies "
            "file (ENLACE_AGENCIES_FILE)"
        )

    async def the_service(agency: Agency = Depends(current_agency)) -> Agency:  # noqa: B008
        if agency.role is not Role.INTERNAL or agency.id != principal_id:
            raise not_found("resource")
        return agency

    return the_service


def roles_dependency(
    current_agency: Callable[..., Awaitable[Agency]], *roles: Role
) -> Callable[..., Awaitable[Agency]]:
    """A dependency for a partner route: principals of other roles (a service or an
    operator key on a partner agency's route) get 403, naming the key's role."""
    allowed = frozenset(roles)
    wanted = " or ".join(
        f"an {r.value} key" if r is Role.AGENCY else f"a {r.value} key" for r in roles
    )

    async def with_roles(agency: Agency = Depends(current_agency)) -> Agency:  # noqa: B008
        if agency.role not in allowed:
            raise Problem(
                403,
                "Not permitted for this key",
                f"This route takes {wanted}; the key presented is a {agency.role.value} key.",
                errors=[
                    {
                        "field": "header.Authorization",
                        "message": f"a {agency.role.value} key may not do this",
                        "type": "role_not_permitted",
                    }
                ],
            )
        return agency

    return with_roles


# --- problems ---------------------------------------------------------------------------


class Problem(HTTPException):
    """An error answered as application/problem+json."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.title = title
        self.errors = errors
        self.extra = extra

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": self.title,
            "status": self.status_code,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


def not_found(what: str = "resource") -> Problem:
    """The answer for missing objects and for other agencies' objects alike."""
    return Problem(404, "Not found", f"No such {what}.")


def invalid_field(field: str, message: str) -> Problem:
    """422 for one field that parsed but breaks a rule, shaped like validation errors."""
    return Problem(
        422,
        "Invalid request",
        f"Invalid fields: {field}",
        errors=[{"field": field, "message": message, "type": "value_error"}],
    )


def parse_id(raw: str, what: str) -> UUID:
    """A path id; a malformed one is answered like any other missing object."""
    try:
        return UUID(raw)
    except ValueError:
        raise not_found(what) from None


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        prefix, parts = parts[0], parts[1:]
        if prefix != "body":
            return f"{prefix}.{'.'.join(parts)}" if parts else prefix
    return ".".join(parts) or "body"


def validation_problem(exc: RequestValidationError) -> Problem:
    # Malformed JSON never gets here: services.kit.edge.InputGuard answers it first.
    errors = list(exc.errors())
    fields = [
        {
            "field": _field_path(tuple(err.get("loc", ()))),
            "message": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in errors
    ]
    names = ", ".join(sorted({f["field"] for f in fields}))
    return Problem(422, "Invalid request", f"Invalid fields: {names}", errors=fields)


_DOMAIN_STATUS: dict[type[DomainError], int] = {
    NotFound: 404,
    InvalidField: 422,
    NotPermitted: 403,
    Conflict: 409,
    StaleVersion: 412,
    Gone: 410,
    Unavailable: 503,
}


def domain_problem(exc: DomainError) -> Problem:
    """The problem response for a use case's refusal."""
    if isinstance(exc, InvalidField):
        return invalid_field(exc.field, exc.message)
    status = next((s for cls, s in _DOMAIN_STATUS.items() if isinstance(exc, cls)), 400)
    return Problem(status, exc.title, exc.detail, **exc.extra)


def install_problem_handlers(app: FastAPI) -> None:
    async def problem_response(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc, Problem):
            problem = exc
        elif exc.status_code == 404:  # no such path: the same answer as a hidden route
            problem = not_found()
        else:
            headers = dict(exc.headers) if exc.headers else None
            problem = Problem(exc.status_code, str(exc.detail), headers=headers)
        return JSONResponse(
            problem.body(),
            status_code=problem.status_code,
            headers=problem.headers,
            media_type=PROBLEM_JSON,
        )

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return await problem_response(request, validation_problem(exc))

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        return await problem_response(request, domain_problem(exc))

    async def failed(request: Request, _: Exception) -> JSONResponse:
        # Never the exception's text: it may quote request data. The traceback goes to
        # the log through the server's error logger, which the kit keeps free of it.
        return await problem_response(
            request, Problem(500, "Internal error", "The service could not complete this.")
        )

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        if not is_transient(exc):
            raise exc  # not the infrastructure: the 500 handler answers
        # Nothing was done, or it was rolled back with the transaction: the caller may
        # send the same request again (with its Idempotency-Key, where it has one).
        log.warning("dependency unavailable; answered 503", error=exc.__class__.__name__)
        return await problem_response(
            request,
            Problem(
                503,
                "Service unavailable",
                "A dependency of this service is briefly unavailable; nothing was "
                "changed. Send the same request again after Retry-After seconds.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ),
        )

    for candidate in HTTP_CANDIDATES:
        app.add_exception_handler(candidate, unavailable)
    app.add_exception_handler(StarletteHTTPException, problem_response)
    app.add_exception_handler(DomainError, refused)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, failed)
