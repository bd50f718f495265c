"""Where the tests find Kafka and PostgreSQL. Plain module: conftest.py calls it.

Order (first that applies wins):

1. ``env``: ``KAFKA_BOOTSTRAP_SERVERS`` and ``ENLACE_TEST_PG_DSN`` (a DSN to a
   database as a superuser: it creates the databases and the service roles) are
   both set.
2. ``testcontainers``: a Docker engine answers ``docker info`` within 5 s.
3. ``local``: ``deploy/local/infra.sh up`` (idempotent; left running afterwards
   so the next run starts in a second).

``ENLACE_TEST_INFRA=env|testcontainers|local`` forces one source (and fails
loudly if it cannot be used) instead of probing.

PostgreSQL roles are as in production: a test database is owned by one service's
login role (``enlace_<service>``, no superuser), CONNECT is revoked from PUBLIC, and
the DSN a test gets logs in as that role. Locally the roles and their passwords are
deploy/local's (``postgres.sh dsn``); elsewhere they are made on first use, with a
password derived from the admin DSN (so parallel sessions agree on it). So do not
point ``ENLACE_TEST_PG_DSN`` at deploy/local's cluster: use the local source there.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from services.kit.kafka import KafkaClient
from services.kit.kafka_acl import admin_for, apply_access, load_access
from services.kit.local_secrets import kafka_bootstrap, kafka_client, kafka_nodes, kafka_password
from tests.helpers import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY_LOCAL = REPO_ROOT / "deploy" / "local"

# testcontainers images: Confluent's cp-kafka 8.x is Apache Kafka 4.x (the
# KafkaContainer class drives the cp-kafka entrypoint, not apache/kafka).
KAFKA_IMAGE = os.environ.get("ENLACE_TEST_KAFKA_IMAGE", "confluentinc/cp-kafka:8.0.0")
POSTGRES_IMAGE = os.environ.get("ENLACE_TEST_POSTGRES_IMAGE", "postgres:15-alpine")

# A cold local install resolves Kafka from Maven Central: give it time.
LOCAL_UP_TIMEOUT_S = 900

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

# Each service's PostgreSQL login role.
SERVICE_ROLES = {
    s: f"enlace_{s}" for s in ("intake", "referral", "followup", "notifications", "ops")
}
LOCAL_PG_SECRETS = REPO_ROOT / ".local" / "secrets" / "postgres"


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str  # "127.0.0.1:19092"
    # DSN to the 'postgres' database as the superuser (scripts and fixtures only).
    # Passwords stay out of repr(): pytest prints fixtures' reprs on failure.
    pg_admin_dsn: str = field(repr=False)
    source: str  # "env" | "testcontainers" | "local"
    can_restart_kafka: bool = False  # True only for "local" (kafka_stop/kafka_start)
    # service -> DSN of its role (any database; dsn_for picks one). Empty: derived.
    pg_role_dsns: Mapping[str, str] = field(default_factory=dict, repr=False)
    # True when the broker authenticates (SASL_SSL) and authorises clients (ACLs):
    # the local broker. Tests then connect as the principal they play.
    kafka_secure: bool = False
    # The server log of the local cluster (None elsewhere), for tests that prove what
    # it never holds.
    pg_log: Path | None = None
    # Local Kafka nodes (ENLACE_KAFKA_NODES): 3 is one cluster, replication factor 3.
    kafka_nodes: int = 1

    def kafka(self, principal: str = "admin") -> KafkaClient:
        """A Kafka client as `principal` (a service's svc-<name>, an agency, enlace-ops;
        admin for fixtures that create topics and ACLs, as the scripts do)."""
        if not self.kafka_secure:
            return KafkaClient(self.kafka_bootstrap, "PLAINTEXT")
        if principal == "admin" and self.source == "env":
            return KafkaClient.from_env()
        return kafka_client(principal, self.kafka_bootstrap)

    def service_kafka(self, service: str) -> KafkaClient:
        return self.kafka(load_access().principal_of(service))

    def role_dsn(self, service: str) -> str:
        """DSN of `service`'s own login role (its default database)."""
        role = service_role(service)
        if service in self.pg_role_dsns:
            return self.pg_role_dsns[service]
        # Not local: a password only these sessions know, the same in all of them.
        password = hmac.new(self.pg_admin_dsn.encode(), role.encode(), hashlib.sha256).hexdigest()
        parts = urlsplit(self.pg_admin_dsn)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}", path="/" + role))

    def dsn_for(self, database: str, service: str) -> str:
        """DSN of `service`'s role to `database` (query string kept)."""
        parts = urlsplit(self.role_dsn(service))
        return urlunsplit(parts._replace(path="/" + quote(database, safe="")))


def service_role(service: str) -> str:
    try:
        return SERVICE_ROLES[service]
    except KeyError:
        raise ValueError(
            f"no PostgreSQL role for {service!r}; expected one of {sorted(SERVICE_ROLES)}"
        ) from None


def provide_infra() -> tuple[Infra, Callable[[], None]]:
    """Return (infra, teardown). Call teardown once at the end of the session."""
    forced = os.environ.get("ENLACE_TEST_INFRA", "").strip().lower()
    if forced not in ("", "env", "testcontainers", "local"):
        raise RuntimeError(f"ENLACE_TEST_INFRA={forced!r}: expected env, testcontainers or local")

    if forced in ("", "env"):
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        dsn = os.environ.get("ENLACE_TEST_PG_DSN", "").strip()
        if bootstrap and dsn:
            secure = os.environ.get("KAFKA_SECURITY_PROTOCOL", "SASL_SSL") != "PLAINTEXT"
            return Infra(bootstrap, dsn, "env", kafka_secure=secure), _noop
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
        POSTGRES_IMAGE,
        username="enlace_admin",
        password=secrets.token_urlsafe(24),
        dbname="postgres",
        driver=None,
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
    run_local("infra.sh", "up")
    admin_dsn, role_dsns = local_postgres()
    infra = Infra(
        kafka_bootstrap=kafka_bootstrap(),  # every node's listener, as deploy/local/env.sh
        pg_admin_dsn=admin_dsn,
        source="local",
        can_restart_kafka=True,
        pg_role_dsns=role_dsns,
        kafka_secure=True,
        pg_log=REPO_ROOT / ".local" / "pg" / "postgres.log",
        kafka_nodes=kafka_nodes(),
    )
    # Left running on purpose: the next session (or engineer) reuses it.
    return infra, _noop


def local_postgres() -> tuple[str, dict[str, str]]:
    """The local cluster (running): the superuser's DSN to 'postgres', from its secret
    file, and each service role's DSN as `postgres.sh dsn` gives it."""
    port = os.environ.get("ENLACE_PG_PORT", "15432")
    # Made by postgres.sh at first start (0600); URL-safe base64, no quoting needed.
    password = (LOCAL_PG_SECRETS / "enlace_admin.password").read_text().strip()
    admin_dsn = f"postgresql://enlace_admin:{password}@127.0.0.1:{port}/postgres"
    return admin_dsn, {s: run_local("postgres.sh", "dsn", s).strip() for s in SERVICE_ROLES}


class ScriptError(RuntimeError):
    """A deploy/local script failed; the message holds its output."""


def run_local(
    script: str,
    *args: str,
    timeout_s: float = LOCAL_UP_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
    inherit: bool = True,
) -> str:
    """Run a deploy/local script (a `.py` one with the project's Python); raise
    `ScriptError` with its full output if it fails. `env` is added to this process's
    environment, or with `inherit=False` is the whole environment."""
    path = DEPLOY_LOCAL / script
    if script.endswith(".py"):
        python = (env or os.environ).get("ENLACE_PYTHON", str(REPO_ROOT / ".venv/bin/python"))
        cmd = [python, str(path), *args]
    else:
        cmd = [str(path), *args]
    full_env = None if env is None else ({**os.environ, **env} if inherit else dict(env))
    try:
        done = subprocess.run(
            cmd,
            cwd=REPO_ROOT,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ScriptError(f"{' '.join(cmd)} timed out after {timeout_s:.0f}s") from exc
    if done.returncode != 0:
        raise ScriptError(f"{' '.join(cmd)} failed (exit {done.returncode}):\n{done.stdout}")
    return done.stdout


def kafka_stop(kill: bool = False) -> None:
    """Stop the local broker: graceful, or SIGKILL at once (simulated crash).

    Only for ``Infra.source == "local"`` (check ``infra.can_restart_kafka``).
    """
    run_local("kafka.sh", "stop", *(["--kill"] if kill else []), timeout_s=120)


def kafka_start() -> None:
    """Start the local broker again and wait until it really answers."""
    run_local("kafka.sh", "start", timeout_s=300)


class PrivateBroker:
    """A broker of its own (deploy/local/kafka.sh with ENLACE_KAFKA_INSTANCE) on free
    ports, for a test that stops it or a bench baseline: nothing else is disturbed.
    Its state under .local/<instance> is removed before the first start and by
    `remove()`. A `bench-*` instance may be `plaintext` (the bench's baseline alone);
    any other is SASL_SSL and gets the declaration's users and ACLs, as the shared
    broker does."""

    def __init__(self, instance: str, *, plaintext: bool = False) -> None:
        self.instance, self.plaintext = instance, plaintext
        port, controller_port = free_port(), free_port()
        while controller_port == port:
            controller_port = free_port()
        self.env = {
            "ENLACE_KAFKA_INSTANCE": instance,
            "ENLACE_KAFKA_PORT": str(port),
            "ENLACE_KAFKA_CONTROLLER_PORT": str(controller_port),
            "ENLACE_KAFKA_NODES": "1",  # one broker, whatever the shared cluster is
            **({"ENLACE_KAFKA_PLAINTEXT_BASELINE": "1"} if plaintext else {}),
        }
        self.bootstrap = f"127.0.0.1:{port}"
        self._fresh = False

    def client(self, principal: str = "admin") -> KafkaClient:
        if self.plaintext:
            return KafkaClient(self.bootstrap, "PLAINTEXT")
        return kafka_client(principal, self.bootstrap)

    def start(self) -> None:
        if not self._fresh:  # a previous run killed before its clean-up
            self.stop()
            self.remove()
            self._fresh = True
        run_local("kafka.sh", "start", timeout_s=300, env=self.env)
        if not self.plaintext:
            apply_access(admin_for(self.client()), load_access(), kafka_password)

    def stop(self) -> None:
        run_local("kafka.sh", "stop", timeout_s=120, env=self.env)

    def remove(self) -> None:
        shutil.rmtree(REPO_ROOT / ".local" / self.instance, ignore_errors=True)
        for suffix in ("pid", "lock"):
            (REPO_ROOT / ".local" / "run" / f"{self.instance}.{suffix}").unlink(missing_ok=True)


def _check_db_name(name: str) -> str:
    if not _DB_NAME.match(name):
        raise ValueError(f"invalid database name {name!r} (letters, digits, _; max 63)")
    return '"' + name + '"'


async def create_database(infra: Infra, name: str, service: str) -> str:
    """Create database ``name`` (must not exist) owned by ``service``'s role, which
    alone may connect to it; return the DSN logging in as that role."""
    ident, role = _check_db_name(name), service_role(service)
    conn = await asyncpg.connect(infra.pg_admin_dsn, timeout=30)
    try:
        if infra.source != "local":  # locally deploy/local/postgres.sh made the roles
            await _ensure_role(conn, role, infra.role_dsn(service))
        await conn.execute(f'CREATE DATABASE {ident} OWNER "{role}"')
        await conn.execute(f"REVOKE ALL ON DATABASE {ident} FROM PUBLIC")
    finally:
        await conn.close()
    return infra.dsn_for(name, service)


_ROLE_LOCK = 0x656E6C6163650002  # "enlace" + 2: one session at a time alters roles


async def _ensure_role(conn: asyncpg.Connection, role: str, dsn: str) -> None:
    """The service role as deploy/local makes it, with the password in ``dsn``."""
    password = urlsplit(dsn).password or ""
    assert re.fullmatch(r"[0-9a-f]{64}", password), "derived role passwords are hex"
    await conn.execute("SELECT pg_advisory_lock($1)", _ROLE_LOCK)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
        verb = "ALTER" if exists else "CREATE"
        await conn.execute(
            f'{verb} ROLE "{role}" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE '
            f"NOREPLICATION NOBYPASSRLS PASSWORD '{password}'"
        )
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _ROLE_LOCK)


async def drop_database(infra: Infra, name: str) -> None:
    """Drop database ``name`` if it exists, disconnecting any leftover sessions."""
    ident = _check_db_name(name)
    conn = await asyncpg.connect(infra.pg_admin_dsn, timeout=30)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {ident} WITH (FORCE)")
    finally:
        await conn.close()
