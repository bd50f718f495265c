"""The HTTP edge every service shares: throttling of failed authentication per client
address (a working key never slowed), and the OpenAPI each service publishes (every
status documented as problem+json, examples on every body, no free text without its
rule, no CDN-loaded docs page)."""

import importlib
from collections.abc import Iterator
from typing import Annotated, Any

import asyncpg
import httpx
import pytest
from asyncpg.exceptions._base import InternalClientError
from fastapi import Depends, FastAPI

from services.kit.http import Agency, AgencyRegistry, agency_dependency
from services.kit.runtime import ServiceRuntime, service_app
from services.kit.settings import ServiceSettings
from services.kit.throttle import AuthThrottle
from tests.helpers import auth

AGENCIES = ServiceSettings.model_fields["agencies_file"].default
UNUSED_DSN = "postgresql://unused@127.0.0.1:1/x"  # apps built, never started


def _throttled_app(limit: int) -> FastAPI:
    settings = ServiceSettings(
        env="local",
        database_url="postgresql://unused@127.0.0.1:1/x",
        auth_failures_per_minute=limit,
    )
    runtime = ServiceRuntime(settings)  # never started: the route needs no database
    app = service_app(runtime, title="edge", description="edge")
    current = agency_dependency(AgencyRegistry.load(AGENCIES), runtime.auth_throttle)

    @app.get("/v1/whoami")
    # The module has no `from __future__ import annotations`: FastAPI reads this one.
    async def whoami(agency: Annotated[Agency, Depends(current)]) -> dict[str, str]:
        return {"id": agency.id}

    return app


def _client(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://edge")


async def test_failed_authentication_is_throttled_per_address_never_a_working_key() -> None:
    app = _throttled_app(limit=5)
    async with _client(app, "198.51.100.7") as guesser, _client(app, "198.51.100.8") as other:
        answers = [
            (await guesser.get("/v1/whoami", headers={"Authorization": f"Bearer guess-{i}"}))
            for i in range(5)
        ]
        assert [a.status_code for a in answers] == [401] * 5
        throttled = await guesser.get("/v1/whoami")  # no key at all: a failure too
        assert throttled.status_code == 429
        assert throttled.headers["content-type"] == "application/problem+json"
        assert 1 <= int(throttled.headers["retry-after"]) <= 60
        assert throttled.json()["status"] == 429
        # A working key from the same address (agencies behind one NAT) goes through.
        working = await guesser.get("/v1/whoami", headers=auth("ong-amanecer"))
        assert (working.status_code, working.json()) == (200, {"id": "ong-amanecer"})
        # Another address is not affected by the first one's failures.
        elsewhere = await other.get("/v1/whoami", headers={"Authorization": "Bearer nope"})
        assert elsewhere.status_code == 401


async def test_throttling_can_be_turned_off() -> None:
    async with _client(_throttled_app(limit=0), "198.51.100.9") as client:
        for i in range(40):
            response = await client.get("/v1/whoami", headers={"Authorization": f"Bearer g{i}"})
            assert response.status_code == 401


def test_failures_age_out_of_the_window_and_the_table_is_bounded() -> None:
    now = [1000.0]
    throttle = AuthThrottle(3, max_addresses=2, monotonic=lambda: now[0])
    for _ in range(3):
        throttle.failed("a")
    assert throttle.retry_after("a") == 60
    now[0] += 45
    assert throttle.retry_after("a") == 15
    now[0] += 15
    assert throttle.retry_after("a") is None  # the oldest failure is a minute old
    throttle.failed("b")
    throttle.failed("c")  # a third address: the oldest known is forgotten
    assert len(throttle._failures) <= 2


# --- the published OpenAPI ---------------------------------------------------------------

SERVICES = ("intake", "referral", "followup", "notifications")


def _openapi(service: str) -> dict[str, Any]:
    module = importlib.import_module(f"services.{service}.app")
    settings_class = next(
        value
        for name, value in vars(module).items()
        if name.endswith("Settings") and name != "ServiceSettings" and isinstance(value, type)
    )
    settings = settings_class(env="local", database_url=UNUSED_DSN)
    app: FastAPI = module.create_app(settings)
    assert app.docs_url is None  # those pages load a CDN's scripts
    assert app.redoc_url is None
    schema: dict[str, Any] = app.openapi()
    return schema


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _free_strings(
    schema: dict[str, Any], node: dict[str, Any], where: str, seen: set[str]
) -> Iterator[str]:
    """Where a request body takes a string with no rule: no pattern, enum, format."""
    ref = node.get("$ref")
    if ref is not None:
        if ref in seen:
            return
        seen = seen | {ref}
    node = _resolve(schema, node)
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in node.get(key, []):
            yield from _free_strings(schema, sub, where, seen)
    if node.get("type") == "string" and not {"pattern", "enum", "format", "const"} & set(node):
        yield where
    for name, sub in node.get("properties", {}).items():
        yield from _free_strings(schema, sub, f"{where}.{name}", seen)
    if isinstance(node.get("items"), dict):
        yield from _free_strings(schema, node["items"], f"{where}[]", seen)


@pytest.mark.parametrize("service", SERVICES)
def test_every_status_is_documented_as_a_problem(service: str) -> None:
    schema = _openapi(service)
    assert "Problem" in schema["components"]["schemas"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for name, operation in _operations(schema):
        responses = operation["responses"]
        if operation.get("security"):
            assert {"401", "429"} <= set(responses), name
            assert "Retry-After" in responses["429"]["headers"], name
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            assert {"400", "413", "422"} <= set(responses), name
            media = content["application/json"]
            assert media.get("examples") or media.get("example"), f"{name}: no example"
        for status, response in responses.items():
            # The probes answer their own document both ways: the status is the answer.
            if int(status) >= 400 and name not in ("GET /readyz", "GET /healthz"):
                body = response["content"]
                assert list(body) == ["application/problem+json"], (name, status)
                assert body["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/Problem"
                }


@pytest.mark.parametrize("service", SERVICES)
def test_no_request_text_is_without_its_rule(service: str) -> None:
    """Every string a body takes says what it may hold (a pattern, at least the no
    control character rule of services.kit.inputs), an enum or a format."""
    schema = _openapi(service)
    free = [
        spot
        for name, operation in _operations(schema)
        for media in operation.get("requestBody", {}).get("content", {}).values()
        if "schema" in media
        for spot in _free_strings(schema, media["schema"], name, set())
    ]
    assert free == []


def test_the_registration_examples_are_a_piura_and_a_guatemala_case() -> None:
    schema = _openapi("intake")
    media = schema["paths"]["/v1/cases"]["post"]["requestBody"]["content"]["application/json"]
    regions = {example["value"]["location"]["region"] for example in media["examples"].values()}
    assert regions == {"PE-PIU", "GT-01"}


def _failing_app() -> FastAPI:
    runtime = ServiceRuntime(ServiceSettings(env="local", database_url=UNUSED_DSN))
    app = service_app(runtime, title="edge", description="edge")

    @app.post("/v1/register")
    async def register() -> None:  # the database is down: nothing listens there
        await asyncpg.connect(UNUSED_DSN, timeout=5)

    @app.get("/v1/restarting")
    async def restarting() -> None:
        raise InternalClientError("cannot switch to state 15; another operation is in progress")

    @app.get("/v1/bug")
    async def bug() -> None:
        raise KeyError("a bug")

    return app


async def test_a_database_that_is_down_answers_503_with_retry_after_never_500() -> None:
    transport = httpx.ASGITransport(app=_failing_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as http:
        for answer in (await http.post("/v1/register"), await http.get("/v1/restarting")):
            assert answer.status_code == 503
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.headers["retry-after"] == "5"
            assert answer.json()["title"] == "Service unavailable"
        assert (await http.get("/v1/bug")).status_code == 500  # a bug stays a 500
