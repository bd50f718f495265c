"""HTTP plumbing shared by every API: agency authentication, RFC 9457 problem
responses that name the offending field, and a request-body size limit.

Every call is made by an authenticated agency (bearer API key; only the key's
SHA-256 is stored). A request for another agency's object must be answered exactly
like a missing one: services raise `not_found()` for both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import yaml
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.kit.errors import (
    Conflict,
    DomainError,
    InvalidField,
    NotFound,
    NotPermitted,
    StaleVersion,
    Unavailable,
)

PROBLEM_JSON = "application/problem+json"


# --- agencies ---------------------------------------------------------------------------


class AgencyConfig(BaseModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    name: str
    country: str = Field(pattern=r"^[A-Z]{2}$")
    roles: list[str] = Field(default_factory=lambda: ["agency"])
    api_key_sha256: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Agency:
    id: str
    name: str
    country: str
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_operations(self) -> bool:
        return "operations" in self.roles

    @property
    def is_internal(self) -> bool:
        """A service principal, for documented internal calls between services."""
        return "internal" in self.roles


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class AgencyRegistry:
    """Agencies and their hashed API keys, from `deploy/agencies.yaml`."""

    def __init__(self, agencies: list[AgencyConfig]) -> None:
        self._by_key: dict[str, Agency] = {}
        self._by_id: dict[str, Agency] = {}
        for cfg in agencies:
            agency = Agency(cfg.id, cfg.name, cfg.country, frozenset(cfg.roles))
            if cfg.id in self._by_id:
                raise ValueError(f"agencies: duplicate agency id {cfg.id!r}")
            self._by_id[cfg.id] = agency
            for digest in cfg.api_key_sha256:
                if digest in self._by_key:
                    raise ValueError(f"agencies: an API key hash is listed twice ({cfg.id})")
                self._by_key[digest.lower()] = agency

    @classmethod
    def load(cls, path: Path) -> AgencyRegistry:
        raw = yaml.safe_load(path.read_text()) or {}
        return cls([AgencyConfig.model_validate(a) for a in raw.get("agencies", [])])

    def authenticate(self, api_key: str) -> Agency | None:
        return self._by_key.get(hash_api_key(api_key))

    def get(self, agency_id: str) -> Agency | None:
        return self._by_id.get(agency_id)

    def __contains__(self, agency_id: object) -> bool:
        return agency_id in self._by_id


_bearer = HTTPBearer(auto_error=False)


def agency_dependency(registry: AgencyRegistry) -> Callable[..., Awaitable[Agency]]:
    """A FastAPI dependency that answers 401 unless a known agency's key is presented."""

    async def current_agency(
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> Agency:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Problem(
                401,
                "Authentication required",
                "Send the agency API key as 'Authorization: Bearer <key>'.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        agency = registry.authenticate(credentials.credentials)
        if agency is None:
            raise Problem(
                401,
                "Invalid API key",
                "The API key is not recognised.",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return agency

    return current_agency


def role_dependency(
    current_agency: Callable[..., Awaitable[Agency]], role: str
) -> Callable[..., Awaitable[Agency]]:
    """A dependency that admits only principals with `role` ("operations",
    "internal"); anyone else gets the same 404 as for a path that does not exist."""

    async def with_role(agency: Agency = Depends(current_agency)) -> Agency:  # noqa: B008
        if role not in agency.roles:
            raise not_found("resource")
        return agency

    return with_role


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
    errors = list(exc.errors())
    if any(err.get("type") == "json_invalid" for err in errors):
        return Problem(
            400,
            "Malformed JSON",
            "The request body is not valid JSON.",
            errors=[{"field": "body", "message": "invalid JSON"}],
        )
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
        assert isinstance(exc, HTTPException)
        problem = exc if isinstance(exc, Problem) else Problem(exc.status_code, str(exc.detail))
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

    app.add_exception_handler(HTTPException, problem_response)
    app.add_exception_handler(DomainError, refused)
    app.add_exception_handler(RequestValidationError, invalid_request)


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413 before they are parsed, whether the
    client declared Content-Length or streamed the body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        received = 0
        too_large = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Stop feeding the app; whatever it answers is replaced by a 413.
                    too_large = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if too_large:
                if not response_started:
                    response_started = True
                    await self._too_large(send)
                return
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _too_large(self, send: Send) -> None:
        body = Problem(
            413,
            "Request body too large",
            f"The body exceeds {self.max_bytes} bytes.",
            errors=[{"field": "body", "message": "too large"}],
        ).body()
        payload = orjson.dumps(body)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
