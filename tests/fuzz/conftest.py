"""The fuzzed stack: the four services as processes on free ports, each with a fresh
database, all on this package's own topics; seeded through their APIs; their
OpenAPI documents loaded by schemathesis. Also the run's summary at the end of the
pytest output."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.conftest import package_namespace, service_settings
from tests.fuzz.fuzzer import Fuzzer
from tests.fuzz.seeds import Seeds, seed
from tests.fuzz.stack import (
    SERVICES,
    SETTINGS,
    LogWatch,
    Stack,
    child_env,
    format_errors,
    settings_env,
)
from tests.fuzz.tally import TALLY
from tests.helpers import free_port
from tests.infra import Infra

namespace = package_namespace("fuzz")

# Each service's settings beyond service_settings(): where the others and the local
# providers are (the same wiring as deploy/local/services.sh).
SMS_AUTH_TOKEN = secrets.token_urlsafe(32)


def _wiring(ports: dict[str, int]) -> dict[str, dict[str, Any]]:
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    return {
        "intake": {},
        "referral": {"intake_url": url["intake"]},
        "followup": {},
        "notifications": {
            "intake_url": url["intake"],
            "referral_internal_url": url["referral"],
            "referral_api_url": url["referral"],
            "followup_api_url": url["followup"],
            "smtp_host": "127.0.0.1",
            "smtp_port": ports["smtp"],
            "sms_base_url": url["sms"],
            "sms_auth_token": SMS_AUTH_TOKEN,
            "sms_status_callback_url": f"{url['notifications']}/v1/sms/status",
            # Deliveries must not depend on Lima's clock.
            "quiet_hours_channels": [],
        },
    }


@pytest.fixture(scope="package")
async def stack(
    infra: Infra,
    namespace: str,
    databases: Callable[..., Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("fuzz-stack"))
    ports = {name: free_port() for name in (*SERVICES, "smtp", "sms")}
    wiring = _wiring(ports)
    try:
        stack.start(
            "smtp",
            [
                *("-m", "services.notifications.local_smtp"),
                *("--port", str(ports["smtp"]), "--maildir", str(stack.root / "mail")),
            ],
            child_env({}),
            ports["smtp"],
        )
        stack.start(
            "sms",
            [
                *("-m", "services.notifications.local_sms"),
                *("--port", str(ports["sms"]), "--dir", str(stack.root / "sms")),
            ],
            child_env({"ENLACE_SMS_AUTH_TOKEN": SMS_AUTH_TOKEN}),
            ports["sms"],
        )
        for service in SERVICES:
            settings = service_settings(
                SETTINGS[service],
                infra,
                namespace,
                await databases(service),
                http_port=ports[service],
                **wiring[service],
            )
            stack.start(
                service,
                ["-m", f"services.{service}"],
                child_env(settings_env(settings)),
                ports[service],
            )
        stack.watch = LogWatch({s: stack.processes[s].log for s in SERVICES})
        started = time.monotonic()
        await asyncio.gather(*(stack.wait_ready(name) for name in stack.processes))
        TALLY.notes.append(f"services ready in {time.monotonic() - started:.0f} s")
        yield stack
    finally:
        await asyncio.to_thread(stack.stop)
    # What the services logged after the last check, their shutdown included.
    late = stack.watch.new_errors() if stack.watch else {}
    if late:
        raise AssertionError("services logged errors:\n" + format_errors(late))


@pytest.fixture(autouse=True)
def _legacy_node_id(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32.5's lazy schemas (`from_fixture`) read and rename the test's
    `Node._nodeid`, which pytest 9.2 no longer has (it keeps `_id`): give it one."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@pytest.fixture(scope="package")
async def seeds(stack: Stack) -> Seeds:
    started = time.monotonic()
    seeded = await seed({s: stack.url(s) for s in SERVICES})
    TALLY.notes.append(f"{seeded.describe()}, in {time.monotonic() - started:.0f} s")
    return seeded


@pytest.fixture(autouse=True)
def _time_fuzzing(request: pytest.FixtureRequest) -> Iterator[None]:
    """Add each fuzzing test's duration to its service's."""
    started = time.monotonic()
    yield
    name = request.node.name
    service = next((s for s in SERVICES if s in name), None)
    if name.startswith("test_fuzz") and service is not None:
        took = time.monotonic() - started
        TALLY.seconds[service] = TALLY.seconds.get(service, 0.0) + took


@pytest.fixture(scope="package")
def fuzzer(stack: Stack, seeds: Seeds) -> Iterator[Fuzzer]:
    with requests.Session() as session:
        yield Fuzzer(
            urls={s: stack.url(s) for s in SERVICES},
            seeds=seeds,
            session=session,
            sms_auth_token=SMS_AUTH_TOKEN,
            sms_log=stack.root / "sms" / "messages.jsonl",
            tally=TALLY,
        )


def _schema(stack: Stack, service: str) -> OpenApiSchema:
    # Explicit examples and generated cases, positive and negative; stateful scenarios
    # of valid requests (their point is the sequence); no coverage phase (its boundary
    # cases would take the whole time budget by themselves).
    config = SchemathesisConfig.from_dict(
        {
            "phases": {
                "coverage": {"enabled": False},
                "stateful": {"generation": {"mode": "positive"}},
            }
        }
    )
    schema = schemathesis.openapi.from_url(f"{stack.url(service)}/openapi.json", config=config)
    schema.config.update(base_url=stack.url(service))
    return schema


@pytest.fixture(scope="package")
def intake_schema(stack: Stack, fuzzer: Fuzzer) -> OpenApiSchema:
    return _schema(stack, "intake")


@pytest.fixture(scope="package")
def referral_schema(stack: Stack, fuzzer: Fuzzer) -> OpenApiSchema:
    return _schema(stack, "referral")


@pytest.fixture(scope="package")
def followup_schema(stack: Stack, fuzzer: Fuzzer) -> OpenApiSchema:
    return _schema(stack, "followup")


@pytest.fixture(scope="package")
def notifications_schema(stack: Stack, fuzzer: Fuzzer) -> OpenApiSchema:
    return _schema(stack, "notifications")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLY.examples:
        return
    with contextlib.suppress(Exception):
        terminalreporter.write_sep("=", "fuzz summary")
    for line in TALLY.summary_lines():
        terminalreporter.write_line(line)
    sys.stdout.flush()
