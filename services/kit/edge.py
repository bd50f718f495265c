"""The HTTP edge every service shares, as plain ASGI middleware (Starlette's
BaseHTTPMiddleware costs about a millisecond a request here):

- `BodyLimitMiddleware` refuses a body over the limit with 413 before it is read
  whole, whether the client declared its length or streamed it.
- `InputGuard` refuses, before any route or model sees it, a JSON body that is not
  plain well-formed JSON (a duplicate key, NaN, nesting deeper than `MAX_DEPTH`,
  not UTF-8) with 400, and a control character in any string of the body, the
  query or the path with 422 naming where it is (404 for the path, which then names
  nothing that exists). Which characters: `services.kit.inputs`; models add their
  own per-field rules on top (no line break in a name).
- `RequestMetricsMiddleware` counts requests by route template and status.
- `SecurityHeaders` adds `Cache-Control: no-store` (every answer is for one
  principal and many carry a child's identity or a caseworker's contact) and
  `X-Content-Type-Options: nosniff` to every response, errors included.

Both answer problems as application/problem+json; neither logs request data.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.kit.http import PROBLEM_JSON, Problem, not_found
from services.kit.inputs import control_character_message, forbidden_character
from services.kit.metrics import KitMetrics

MAX_DEPTH = 32  # objects and arrays within each other; our deepest body needs 4


class _Refused(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _not_a_number(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON number")


def _bad_body(title: str, message: str, kind: str, field: str = "body") -> _Refused:
    return _Refused(
        Problem(
            400,
            title,
            f"{message}.",
            errors=[{"field": field, "message": message, "type": kind}],
        )
    )


def parse_json_body(body: bytes) -> Any:
    """The body as JSON, or `_Refused` with the problem answer."""
    try:
        return json.loads(
            body.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_not_a_number
        )
    except _DuplicateKey as dup:
        shown = dup.key if forbidden_character(dup.key) is None else "(a key with a control)"
        raise _bad_body(
            "Duplicate key in JSON",
            f"the key {shown!r} appears twice in one object",
            "duplicate_key",
            field=shown,
        ) from None
    except RecursionError:
        raise _too_deep() from None
    except (UnicodeDecodeError, ValueError):  # JSONDecodeError is a ValueError
        raise _bad_body("Malformed JSON", "the body is not valid JSON", "json_invalid") from None


def _too_deep() -> _Refused:
    return _bad_body(
        "JSON nested too deeply",
        f"objects and arrays may be nested at most {MAX_DEPTH} deep",
        "json_too_deep",
    )


def check_strings(document: Any) -> None:
    """`_Refused` (422, naming the field) for the first string, key or value, holding a
    character no text may hold; `_Refused` (400) for nesting deeper than MAX_DEPTH."""
    stack: list[tuple[tuple[str, ...], Any, int]] = [((), document, 0)]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, str):
            _check_text(".".join(path) or "body", value)
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise _too_deep()
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _check_text(".".join(path) or "body", key)
                stack.append(((*path, str(key)), item, depth + 1))


def _check_text(field: str, text: str, *, multiline: bool = True) -> None:
    found = forbidden_character(text, multiline=multiline)
    if found is not None:
        message = control_character_message(*found, multiline=multiline)
        raise _Refused(
            Problem(
                422,
                "Invalid request",
                f"Invalid fields: {field}",
                errors=[{"field": field, "message": message, "type": "control_character"}],
            )
        )


def _is_json(scope: Scope) -> bool:
    content_type = dict(scope.get("headers") or []).get(b"content-type")
    if content_type is None:
        return True  # FastAPI reads a body without content type as JSON
    media = content_type.split(b";", 1)[0].strip().lower()
    return bool(media == b"application/json" or media.endswith(b"+json"))


async def answer(send: Send, problem: Problem) -> None:
    """Send `problem` as the whole response."""
    payload = orjson.dumps(problem.body())
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(payload)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in (problem.headers or {}).items()]
    await send({"type": "http.response.start", "status": problem.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class InputGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if forbidden_character(scope.get("path", "")) is not None:
            await answer(send, not_found())
            return
        try:
            query = scope.get("query_string", b"").decode("utf-8", errors="replace")
            for name, value in parse_qsl(query, keep_blank_values=True):
                _check_text("query", name, multiline=False)
                _check_text(f"query.{name}", value, multiline=False)
        except _Refused as refused:
            await answer(send, refused.problem)
            return
        if not _is_json(scope):
            await self.app(scope, receive, send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if body:
            try:
                check_strings(parse_json_body(bytes(body)))
            except _Refused as refused:
                await answer(send, refused.problem)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class SecurityHeaders:
    HEADERS = ((b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"))

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in self.HEADERS if n not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


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
        await answer(
            send,
            Problem(
                413,
                "Request body too large",
                f"The body exceeds {self.max_bytes} bytes.",
                errors=[{"field": "body", "message": "too large"}],
            ),
        )


class RequestMetricsMiddleware:
    """Counts requests by route template and status. Plain ASGI: Starlette's
    BaseHTTPMiddleware costs about a millisecond per request on this hardware."""

    def __init__(self, app: ASGIApp, metrics: KitMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope.get("method", "")
            self.metrics.http_requests.labels(method, route, status).inc()
            self.metrics.http_latency.labels(method, route).observe(time.perf_counter() - started)
