"""Where the tests find Kafka and PostgreSQL. Plain module: conftest.py calls it.

Order (first that applies wins):

1. ``env``: ``KAFKA_BOOTSTRAP_SERVERS`` and ``ENLACE_TEST_PG_DSN`` (a DSN to a
   database where the role may ``CREATE DATABASE``) are both set.
2. ``testcontainers``: a Docker engine answers ``docker info`` within 5 s.
3. ``local``: ``deploy/local/infra.sh up`` (idempotent; left running afterwards
   so the next run starts in a second).

``ENLACE_TEST_INFRA=env|testcontainers|local`` forces one source (and fails
loudly if it cannot be used) instead of probing.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY_LOCAL = REPO_ROOT / "deploy" / "local"

# testcontainers images: Confluent's cp-kafka 8.x is Apache Kafka 4.x (the
# KafkaContainer class drives the cp-kafka entrypoint, not apache/kafka).
KAFKA_IMAGE = os.environ.get("ENLACE_TEST_KAFKA_IMAGE", "confluentinc/cp-kafka:8.0.0")
POSTGRES_IMAGE = os.environ.get("ENLACE_TEST_POSTGRES_IMAGE", "postgres:15-alpine")

# A cold local install resolves Kafka from Maven Central: give it time.
LOCAL_UP_TIMEOUT_S = 900

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str  # "127.0.0.1:19092"
    pg_admin_dsn: str  # DSN to the 'postgres' database as a role that may CREATE DATABASE
    source: str  # "env" | "testcontainers" | "local"
    can_restart_kafka: bool = False  # True only for "local" (kafka_stop/kafka_start)

    def dsn_for(self, database: str) -> str:
        """The admin DSN with its database replaced (query string kept)."""
        parts = urlsplit(self.pg_admin_dsn)
        return urlunsplit(parts._replace(path="/" + quote(database, safe="")))


def provide_infra() -> tuple[Infra, Callable[[], None]]:
    """Return (infra, teardown). Call teardown once at the end of the session."""
    forced = os.environ.get("ENLACE_TEST_INFRA", "").strip().lower()
    if forced not in ("", "env", "testcontainers", "local"):
        raise RuntimeError(f"ENLACE_TEST_INFRA={forced!r}: expected env, testcontainers or local")

    if forced in ("", "env"):
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        dsn = os.environ.get("ENLACE_TEST_PG_DSN", "").strip()
        if bootstrap and dsn:
            return Infra(bootstrap, dsn, "env"), _noop
        if forced == "env":
            raise RuntimeError(
                "ENLACE_TEST_INFRA=env needs KAFKA_BOOTSTRAP_SERVERS and ENLACE_TEST_PG_DSN"
            )

    if forced == "testcontainers" or (forced == "" and docker_available()):
        return _from_testcontainers()

    return _from_local()


def docker_available(timeout_s: float = 5.0) -> bool:
    """True if a Docker engine answers (the CLI alone is not enough)."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        done = subprocess.run(
            [docker, "info"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _noop() -> None:
    return None


def _from_testcontainers() -> tuple[Infra, Callable[[], None]]:
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer

    kafka: Any = KafkaContainer(KAFKA_IMAGE).with_kraft()
    # Same single-broker settings as deploy/local (see DESIGN.md pitfalls).
    for key, value in {
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_NUM_PARTITIONS": "3",
    }.items():
        kafka.with_env(key, value)
    postgres: Any = PostgresContainer(
        POSTGRES_IMAGE, username="enlace", password="enlace", dbname="postgres", driver=None
    )
    started: list[Any] = []

    def teardown() -> None:
        for container in reversed(started):
            # Best effort: Ryuk reaps leftovers anyway.
            with contextlib.suppress(Exception):
                container.stop()

    try:
        kafka.start(timeout=120)
        started.append(kafka)
        postgres.start()
        started.append(postgres)
        infra = Infra(
            kafka_bootstrap=str(kafka.get_bootstrap_server()),
            pg_admin_dsn=str(postgres.get_connection_url(driver=None)),
            source="testcontainers",
        )
    except BaseException:
        teardown()
        raise
    return infra, teardown


def _from_local() -> tuple[Infra, Callable[[], None]]:
    _run_local("infra.sh", "up")
    host = "127.0.0.1"
    kafka_port = os.environ.get("ENLACE_KAFKA_PORT", "19092")
    pg_port = os.environ.get("ENLACE_PG_PORT", "15432")
    infra = Infra(
        kafka_bootstrap=f"{host}:{kafka_port}",
        pg_admin_dsn=f"postgresql://enlace:enlace@{host}:{pg_port}/postgres",
        source="local",
        can_restart_kafka=True,
    )
    # Left running on purpose: the next session (or engineer) reuses it.
    return infra, _noop


def _run_local(script: str, *args: str, timeout_s: float = LOCAL_UP_TIMEOUT_S) -> str:
    """Run a deploy/local script; raise with its full output if it fails."""
    cmd = [str(DEPLOY_LOCAL / script), *args]
    try:
        done = subprocess.run(
            cmd,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{' '.join(cmd)} timed out after {timeout_s:.0f}s") from exc
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {done.returncode}):\n{done.stdout}")
    return done.stdout


def kafka_stop(kill: bool = False) -> None:
    """Stop the local broker: graceful, or SIGKILL at once (simulated crash).

    Only for ``Infra.source == "local"`` (check ``infra.can_restart_kafka``).
    """
    _run_local("kafka.sh", "stop", *(["--kill"] if kill else []), timeout_s=120)


def kafka_start() -> None:
    """Start the local broker again and wait until it really answers."""
    _run_local("kafka.sh", "start", timeout_s=300)


def _check_db_name(name: str) -> str:
    if not _DB_NAME.match(name):
        raise ValueError(f"invalid database name {name!r} (letters, digits, _; max 63)")
    return '"' + name + '"'


async def create_database(infra: Infra, name: str) -> str:
    """Create database ``name`` (must not exist); return its DSN."""
    ident = _check_db_name(name)
    conn = await asyncpg.connect(infra.pg_admin_dsn, timeout=30)
    try:
        await conn.execute(f"CREATE DATABASE {ident}")
    finally:
        await conn.close()
    return infra.dsn_for(name)


async def drop_database(infra: Infra, name: str) -> None:
    """Drop database ``name`` if it exists, disconnecting any leftover sessions."""
    ident = _check_db_name(name)
    conn = await asyncpg.connect(infra.pg_admin_dsn, timeout=30)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {ident} WITH (FORCE)")
    finally:
        await conn.close()
