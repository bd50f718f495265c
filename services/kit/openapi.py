"""The OpenAPI every service publishes says every status an operation can answer,
each error as application/problem+json (RFC 9457) with one `Problem` schema.

Routes declare what their use cases can refuse with `responses=problems(403, 404,
409, ...)`. What the edge and the kit answer for any operation is added here, from
the operation's shape, so that no route can forget it:

- an operation with a security requirement: 401 (no key, an unknown key) and 429
  (too many failed authentications from the address, `services.kit.throttle`);
- an operation with a body: 413 (too large); with a JSON body also 400 (malformed
  JSON, a duplicate key, nesting too deep) and 422 (a field breaks a rule);
- an operation with query or header parameters (or a constrained path one): 422;
  with path parameters: 404 (an id that is malformed is answered like a missing
  one);
- FastAPI's own 422 (`HTTPValidationError`, application/json) is replaced, since
  the kit answers validation errors as problems.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.kit.http import PROBLEM_JSON

PROBLEM_REF = "#/components/schemas/Problem"

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem. `errors` names each offending field; some "
    "answers add members (e.g. `allowed_actions`, `current_state`).",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "example": "about:blank"},
        "title": {"type": "string", "example": "Invalid request"},
        "status": {"type": "integer", "example": 422},
        "detail": {"type": "string", "example": "Invalid fields: child.given_names"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "field": {"type": "string", "example": "child.given_names"},
                    "message": {"type": "string"},
                    "type": {"type": "string", "example": "control_character"},
                },
            },
        },
    },
    "additionalProperties": True,
}

DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request: the body is not JSON, repeats a key or nests too deeply",
    401: "No API key, or a key nobody holds",
    403: "This key may not do this (another role), or the step is not the caller's",
    404: "No such object, or one the caller may not see (answered alike)",
    409: "The object's state does not allow this",
    410: "The object was erased for good",
    412: "If-Match names an older version",
    413: "The body is larger than the service accepts",
    422: "A field is missing or breaks a rule; `errors` names each",
    428: "This operation needs an If-Match header",
    429: "Too many failed authentications from this address; see Retry-After",
    503: "A dependency (database, broker) is briefly unavailable; nothing was changed: "
    "send the same request again after Retry-After",
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "The Bearer scheme, and why the key was refused",
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds to wait before trying again",
            "schema": {"type": "integer"},
        }
    },
    503: {
        "Retry-After": {
            "description": "Seconds to wait before trying again",
            "schema": {"type": "integer"},
        }
    },
}


def problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description or DESCRIPTIONS[status],
        "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}},
    }
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response


def problems(*statuses: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status a use case of the route can refuse with.
    `described` overrides a description: `problems(404, s409="Already closed")`."""
    return {status: problem_response(status, described.get(f"s{status}")) for status in statuses}


def _complete_operation(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    parameters = operation.get("parameters", [])
    statuses: set[int] = set()
    if operation.get("security"):
        statuses |= {401, 429, 503}
    body = operation.get("requestBody", {}).get("content", {})
    if body:
        statuses |= {413, 503}
    if any(media == "application/json" or media.endswith("+json") for media in body):
        statuses |= {400, 422}
    if any(p.get("in") != "path" or _constrained(p.get("schema", {})) for p in parameters):
        statuses.add(422)
    if any(p.get("in") == "path" for p in parameters):
        statuses.add(404)
    validation = responses.get("422", {}).get("content", {})
    if "application/json" in validation:  # FastAPI's HTTPValidationError
        responses.pop("422")
    for status in sorted(statuses):
        responses.setdefault(str(status), problem_response(status))


def _constrained(schema: dict[str, Any]) -> bool:
    return any(key in schema for key in ("pattern", "format", "enum", "minLength", "maxLength"))


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with the kit's statuses added to every operation and one Problem."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict) and "responses" in operation:
                _complete_operation(operation)
    return schema


def install(app: FastAPI) -> None:
    """Make `app.openapi()` the completed document (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                    tags=app.openapi_tags,
                    servers=app.servers,
                    webhooks=app.webhooks.routes,  # what a service sends (partner feeds)
                )
            )
        return app.openapi_schema

    setattr(app, "openapi", openapi)  # noqa: B010  FastAPI's documented override
