"""`make bench`: every figure of the system in one run, beside the raw aiokafka
baseline measured in the same run, against the real local Kafka and PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import platform
import sys
import time
import uuid

import asyncpg

from bench.common import BenchContext, Figure
from services.kit.kafka import KafkaClient
from services.kit.kafka_acl import load_access, namespace_topics
from services.kit.local_secrets import kafka_client
from tests.infra import Infra, create_database, local_postgres

SECTIONS = [
    "foundation",
    "sealing",
    "referral",
    "followup",
    "notifications",
    "webhooks",
    "pipeline",
]
# Whose role owns a bench database when the name is not a service's (as in tests).
BENCH_DB_ROLES = {"relaybench": "intake", "intakebench": "intake"}


async def main(selected: list[str]) -> int:
    # The local profile (demo agencies and keys of deploy/local), for the services
    # built here and the processes started from here.
    os.environ["ENLACE_ENV"] = "local"
    # The local broker as its clients see it: SASL_SSL with SCRAM-SHA-512 and ACLs.
    # The bench makes topics and grants as the admin (as the scripts do); each service
    # connects as its own principal of deploy/kafka-access.yaml.
    admin = kafka_client("admin", os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None)
    bootstrap = admin.bootstrap
    access = load_access()

    def service_kafka(service: str) -> KafkaClient:
        return kafka_client(access.principal_of(service), bootstrap)

    # Databases are made by the superuser and owned by a service role, as in tests.
    # ENLACE_BENCH_PG_DSN: another cluster's superuser DSN (roles are then made there).
    if env_dsn := os.environ.get("ENLACE_BENCH_PG_DSN"):
        pg = Infra(bootstrap, env_dsn, "env")
    else:
        local_admin, role_dsns = local_postgres()
        pg = Infra(bootstrap, local_admin, "local", pg_role_dsns=role_dsns)
    admin_dsn = pg.pg_admin_dsn
    run_id = uuid.uuid4().hex[:6]
    databases: list[str] = []

    async def make_database(service: str) -> str:
        name = f"bench_{service}_{run_id}_{len(databases)}"
        dsn = await create_database(pg, name, BENCH_DB_ROLES.get(service, service))
        databases.append(name)
        return dsn

    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    print(f"Enlace bench — {machine}, Python {platform.python_version()}")
    print(f"Kafka {bootstrap} ({admin.security_protocol}, {admin.sasl_mechanism}), run {run_id}\n")
    missed = 0
    try:
        for name in selected:
            try:
                module = importlib.import_module(f"bench.{name}")
            except ModuleNotFoundError:
                print(f"[{name}] not available yet\n")
                continue
            # Each section has topics of its own: one section's services must never
            # consume the records another section produced.
            namespace = f"bench-{run_id}-{name}"
            async with namespace_topics(admin, namespace):
                ctx = BenchContext(admin, namespace, make_database, service_kafka)
                started = time.perf_counter()
                print(f"[{name}]")
                figures: list[Figure] = await module.run(ctx)
                for figure in figures:
                    print("  " + figure.line())
                    missed += figure.met is False
                print(f"  ({time.perf_counter() - started:.1f} s)\n")
    finally:
        conn = await asyncpg.connect(admin_dsn)
        for name in databases:
            if os.environ.get("ENLACE_BENCH_KEEP_DATABASES"):
                print(f"kept database {name}")
                continue
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
    print("all targets met" if not missed else f"{missed} target(s) missed")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("sections", nargs="*", default=SECTIONS)
    sys.exit(asyncio.run(main(parser.parse_args().sections)))
