"""PostgreSQL least privilege, on the real server: each service logs in as its own
role, which owns its own database and nothing else, cannot touch the server's files
or make databases and roles; the server takes SCRAM-SHA-256 on loopback only; the
generated passwords are private files. (Locally these are deploy/local/postgres.sh's
work; the tests' databases are made the same way by tests/infra.py.)"""

from __future__ import annotations

import asyncio
import stat
import struct
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.infra import LOCAL_PG_SECRETS, SERVICE_ROLES, Infra

SERVICES = tuple(SERVICE_ROLES)


def _local_only(infra: Infra) -> None:
    if infra.source != "local":
        pytest.skip("checks deploy/local/postgres.sh's cluster")


def _with_password(dsn: str, password: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{password}@{host}"))


@pytest.fixture
async def admin(infra: Infra) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(infra.pg_admin_dsn, timeout=10)
    yield conn
    await conn.close()


@pytest.fixture(scope="module")
async def intake_dsn(databases: Callable[..., Any]) -> str:
    dsn: str = await databases("intake")
    return dsn


@pytest.fixture
async def intake(intake_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(intake_dsn, timeout=10)
    yield conn
    await conn.close()


async def _refused_connect(dsn: str) -> asyncpg.PostgresError:
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except asyncpg.PostgresError as refused:
        return refused
    await conn.close()
    raise AssertionError(f"logged in as {urlsplit(dsn).username} to {urlsplit(dsn).path}")


async def test_a_test_database_is_owned_by_its_service_role_and_closed_to_the_others(
    infra: Infra, intake: asyncpg.Connection, intake_dsn: str
) -> None:
    assert await intake.fetchval("SELECT current_user") == "enlace_intake"
    owner = await intake.fetchval(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
    )
    assert owner == "enlace_intake"
    database = urlsplit(intake_dsn).path.lstrip("/")
    for other in ("referral", "followup", "notifications"):
        error = await _refused_connect(infra.dsn_for(database, other))
        assert isinstance(error, asyncpg.InsufficientPrivilegeError), error
        assert f'permission denied for database "{database}"' in str(error)


async def test_each_local_service_role_reaches_its_own_database_only(infra: Infra) -> None:
    _local_only(infra)
    for service in SERVICES:
        own = infra.dsn_for(f"enlace_{service}", service)
        conn = await asyncpg.connect(own, timeout=10)
        try:
            assert await conn.fetchval("SELECT current_user") == f"enlace_{service}"
        finally:
            await conn.close()
        for database in [f"enlace_{s}" for s in SERVICES if s != service] + ["postgres"]:
            error = await _refused_connect(infra.dsn_for(database, service))
            assert isinstance(error, asyncpg.InsufficientPrivilegeError), (service, database)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_read_binary_file('/etc/passwd')",
        "SELECT pg_ls_dir('/')",
        "SELECT lo_import('/etc/passwd')",
        "COPY probe FROM '/etc/passwd'",
        "COPY probe FROM PROGRAM 'id'",
        "COPY probe TO '/tmp/enlace-probe'",
        "CREATE DATABASE enlace_probe",
        "CREATE ROLE enlace_probe",
        "ALTER ROLE enlace_intake SUPERUSER",
        "ALTER ROLE enlace_intake CREATEDB",
        "SET ROLE enlace_referral",
    ],
)
async def test_a_service_role_cannot_touch_the_server_nor_gain_privileges(
    intake: asyncpg.Connection, statement: str
) -> None:
    await intake.execute("CREATE TEMP TABLE probe (line TEXT)")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await intake.execute(statement)


async def test_a_service_role_has_no_privileged_attribute_nor_membership(
    intake: asyncpg.Connection,
) -> None:
    row = await intake.fetchrow(
        """SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls,
                  (SELECT count(*) FROM pg_auth_members WHERE member = r.oid) AS memberships
           FROM pg_roles r WHERE rolname = current_user"""
    )
    assert row is not None
    assert dict(row) == {
        "rolsuper": False,
        "rolcreatedb": False,
        "rolcreaterole": False,
        "rolreplication": False,
        "rolbypassrls": False,
        "memberships": 0,
    }
    for powerful in ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program"):
        assert not await intake.fetchval("SELECT pg_has_role($1, 'USAGE')", powerful)


async def test_local_roles_and_databases_are_as_declared(
    infra: Infra, admin: asyncpg.Connection
) -> None:
    _local_only(infra)
    roles = await admin.fetch(
        """SELECT rolname, rolcanlogin, rolsuper OR rolcreatedb OR rolcreaterole
                  OR rolreplication OR rolbypassrls AS privileged,
                  rolpassword LIKE 'SCRAM-SHA-256$%' AS scram
           FROM pg_authid WHERE rolname = ANY($1::text[]) ORDER BY rolname""",
        list(SERVICE_ROLES.values()),
    )
    assert [tuple(r) for r in roles] == [
        (role, True, False, True) for role in sorted(SERVICE_ROLES.values())
    ]
    databases = await admin.fetch(
        """SELECT datname, pg_get_userbyid(datdba) AS owner,
                  coalesce(array_to_string(datacl, ','), '') AS acl
           FROM pg_database WHERE datname = ANY($1::text[])""",
        [*SERVICE_ROLES.values(), "postgres", "template1"],
    )
    owners = {r["datname"]: r["owner"] for r in databases}
    assert owners == {
        **{role: role for role in SERVICE_ROLES.values()},
        "postgres": "enlace_admin",
        "template1": "enlace_admin",
    }
    # "=..." in an ACL is a grant to PUBLIC; an empty ACL means PUBLIC's defaults (CONNECT).
    for r in databases:
        assert r["acl"], f"{r['datname']} keeps the default ACL (PUBLIC may connect)"
        assert not any(grant.startswith("=") for grant in r["acl"].split(",")), dict(r)


def test_local_passwords_are_generated_private_files(infra: Infra) -> None:
    _local_only(infra)
    assert stat.S_IMODE(LOCAL_PG_SECRETS.stat().st_mode) == 0o700
    values = set()
    for role in ("enlace_admin", *SERVICE_ROLES.values()):
        path = LOCAL_PG_SECRETS / f"{role}.password"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        value = path.read_text().strip()
        assert len(value) >= 40, path  # 32 random bytes, base64
        values.add(value)
    assert len(values) == 1 + len(SERVICE_ROLES)


async def test_pg_hba_takes_only_scram_over_loopback(
    infra: Infra, admin: asyncpg.Connection
) -> None:
    _local_only(infra)
    rules = await admin.fetch(
        "SELECT type, address, netmask, auth_method, error FROM pg_hba_file_rules"
    )
    assert [tuple(r) for r in rules] == [
        ("host", "127.0.0.1", "255.255.255.255", "scram-sha-256", None)
    ]
    # Live: the server asks a service role for SCRAM-SHA-256, nothing weaker...
    host, port = urlsplit(infra.pg_admin_dsn).hostname, urlsplit(infra.pg_admin_dsn).port
    assert host is not None
    assert port is not None
    kind, payload = await _auth_request(host, port, "enlace_intake", "enlace_intake")
    assert kind == b"R"
    assert struct.unpack("!i", payload[:4])[0] == 10  # AuthenticationSASL
    assert payload[4:].split(b"\0")[:-2] == [b"SCRAM-SHA-256"]
    # ...refuses a wrong password...
    wrong = _with_password(infra.dsn_for("enlace_intake", "intake"), "enlace")
    assert isinstance(await _refused_connect(wrong), asyncpg.InvalidPasswordError)
    # ...and the Unix socket even to the superuser with the right password.
    socket_dir = await admin.fetchval("SHOW unix_socket_directories")
    parts = urlsplit(infra.pg_admin_dsn)
    error = await _refused_connect(
        f"postgresql://{parts.username}:{parts.password}@/postgres?host={socket_dir}&port={port}"
    )
    assert isinstance(error, asyncpg.InvalidAuthorizationSpecificationError), error
    assert "no pg_hba.conf entry" in str(error)


async def test_a_password_stored_without_scram_cannot_log_in(
    infra: Infra, admin: asyncpg.Connection
) -> None:
    """What a `password` or `md5` rule would accept, scram-sha-256 refuses."""
    _local_only(infra)
    role = f"enlace_md5_probe_{uuid.uuid4().hex[:8]}"
    await admin.execute("SET password_encryption = 'md5'")
    await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'right-password'")
    try:
        assert (
            await admin.fetchval(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'")
        )[:3] == "md5"
        dsn = _with_password(infra.dsn_for("postgres", "intake"), "right-password")
        dsn = dsn.replace("enlace_intake:", f"{role}:", 1)
        assert isinstance(await _refused_connect(dsn), asyncpg.InvalidPasswordError)
    finally:
        await admin.execute(f"DROP ROLE {role}")


async def _auth_request(host: str, port: int, user: str, database: str) -> tuple[bytes, bytes]:
    """Send a protocol 3.0 startup message; return the server's first reply."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        params = b"".join(
            k + b"\0" + v.encode() + b"\0" for k, v in ((b"user", user), (b"database", database))
        )
        body = struct.pack("!i", 196608) + params + b"\0"
        writer.write(struct.pack("!i", len(body) + 4) + body)
        await writer.drain()
        kind = await asyncio.wait_for(reader.readexactly(1), 10)
        (length,) = struct.unpack("!i", await reader.readexactly(4))
        return kind, await reader.readexactly(length - 4)
    finally:
        writer.close()
