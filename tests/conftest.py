"""Fixtures: real Kafka and PostgreSQL for every test that is not a pure unit test.

Servers come from the environment, else testcontainers when a Docker engine answers,
else the local runtime of deploy/local (see tests/infra.py). Each test package gets
its own topic namespace (see `package_namespace`) and its own databases, so neither
parallel runs nor the services of another package ever see its data.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.kit.kafka_acl import namespace_topics
from services.kit.settings import ServiceSettings
from tests.helpers import DEMO_KEYS, TopicReader
from tests.infra import Infra, create_database, drop_database, provide_infra

RUN_ID = uuid.uuid4().hex[:8]
# The suite is the local profile (demo agencies file and keys of deploy/local), in
# this process and the service processes tests start; a production default would
# refuse them (tests/kit/test_production_settings.py says how).
os.environ["ENLACE_ENV"] = "local"


@pytest.fixture(scope="session")
def infra() -> Any:
    provided, teardown = provide_infra()
    yield provided
    teardown()


@contextlib.asynccontextmanager
async def fresh_namespace(infra: Infra, name: str, partitions: int = 3) -> AsyncIterator[str]:
    """Every contract topic (and .dlq) under a namespace of its own, with the ACLs of
    deploy/kafka-access.yaml for those topics; all deleted afterwards."""
    async with namespace_topics(
        infra.kafka(), name, partitions=partitions, acls=infra.kafka_secure
    ):
        yield name


def package_namespace(package: str) -> Any:
    """The `namespace` fixture of one test package: its topics, deleted afterwards, so
    that services started by another package's tests (same session, same broker)
    never consume this package's events.

    Every package's conftest.py defines its own (`namespace = package_namespace(...)`):
    pytest scopes a package fixture to the package of the conftest that defines it,
    so a single one here would be one namespace for the whole suite."""

    @pytest.fixture(scope="package")
    async def namespace(infra: Infra) -> AsyncIterator[str]:
        async with fresh_namespace(infra, f"test-{RUN_ID}-{package}") as ns:
            yield ns

    return namespace


@pytest.fixture(scope="session")
async def databases(infra: Infra) -> AsyncIterator[Callable[..., Any]]:
    """`await databases("intake")` -> DSN of a fresh database for this session, owned
    by the service's own role (no superuser) and logging in as it.

    The owner is the service the name says ("hc_referral" -> referral); a database
    for something else names the service whose role it runs as:
    `await databases("relay", role="intake")`.
    """
    created: list[str] = []

    async def make(name: str, role: str | None = None) -> str:
        database = f"enlace_{name}_{RUN_ID}_{len(created)}"
        dsn = await create_database(infra, database, role or name.removeprefix("hc_"))
        created.append(database)
        return dsn

    yield make
    for name in created:
        with contextlib.suppress(Exception):
            await drop_database(infra, name)


@pytest.fixture
def topics(infra: Infra, namespace: str) -> TopicReader:
    return TopicReader(infra.kafka(), namespace)


def service_settings(
    cls: type[ServiceSettings], infra: Infra, namespace: str, dsn: str, **overrides: Any
) -> Any:
    service = cls.model_fields["service_name"].default
    kafka = infra.service_kafka(service)
    if "internal_api_key" in cls.model_fields:  # the service's key for internal calls
        overrides.setdefault("internal_api_key", DEMO_KEYS[f"svc-{service}"])
    values: dict[str, Any] = {
        "env": "local",
        "database_url": dsn,
        "kafka_bootstrap_servers": kafka.bootstrap,
        "kafka_security_protocol": kafka.security_protocol,
        "kafka_sasl_username": kafka.username,
        "kafka_sasl_password": kafka.password,
        "kafka_ssl_cafile": kafka.cafile,
        "topic_namespace": namespace,
        # The service principal's ACL admits only groups starting with enlace-<service>.
        "consumer_group": f"enlace-{service}.{namespace}-{uuid.uuid4().hex[:6]}",
        "outbox_fallback_poll_seconds": 0.5,
    }
    return cls(**(values | overrides))


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run an app's lifespan (runtime, relay, subscribers) and talk to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client
