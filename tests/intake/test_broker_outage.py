"""Kafka down: intake keeps registering (the events wait in the outbox); Kafka back:
every event is published exactly once, in order per case.

Runs on a private broker of its own (deploy/local/kafka.sh with
ENLACE_KAFKA_INSTANCE), so stopping it disturbs nothing else on the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from contracts.topics import Topic
from services.intake.app import IntakeSettings, create_app
from services.kit.kafka import ensure_topics
from tests.conftest import running, service_settings
from tests.factories import piura_adolescent_girl
from tests.helpers import TopicReader, auth, free_port, poll_until
from tests.infra import Infra

REPO = Path(__file__).resolve().parents[2]
INSTANCE = "kafka-outage-test"
NAMESPACE = "outage"


class PrivateBroker:
    def __init__(self) -> None:
        self.port, self.controller_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "ENLACE_KAFKA_INSTANCE": INSTANCE,
            "ENLACE_KAFKA_PORT": str(self.port),
            "ENLACE_KAFKA_CONTROLLER_PORT": str(self.controller_port),
        }

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [str(REPO / "deploy/local/kafka.sh"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, (
            f"kafka.sh {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        )

    def start(self) -> None:
        self._run("start")
        # Its own users and ACLs, from the same declaration as the main broker.
        for args in ([], ["--namespace", NAMESPACE]):
            result = subprocess.run(
                [
                    sys.executable,
                    str(REPO / "deploy/local/kafka_access.py"),
                    "--bootstrap",
                    self.bootstrap,
                    *args,
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert result.returncode == 0, result.stdout + result.stderr

    def stop(self) -> None:
        self._run("stop")


async def _outbox_rows(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        rows: int = await conn.fetchval("SELECT count(*) FROM outbox")
        return rows
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def broker(infra: Infra) -> Iterator[PrivateBroker]:
    if not infra.can_restart_kafka:
        pytest.skip(
            f"needs the local runtime to run a private broker (servers came from {infra.source})"
        )
    shutil.rmtree(REPO / ".local" / INSTANCE, ignore_errors=True)
    private = PrivateBroker()
    private.start()
    yield private
    private.stop()
    shutil.rmtree(REPO / ".local" / INSTANCE, ignore_errors=True)


@pytest.mark.broker_restart
async def test_cases_registered_while_kafka_is_down_are_published_once_in_order(
    broker: PrivateBroker, infra: Infra, databases: Callable[[str], Any]
) -> None:
    namespace = NAMESPACE
    await ensure_topics(infra.kafka().as_bootstrap(broker.bootstrap), namespace, partitions=3)
    dsn = await databases("intake")
    settings = service_settings(IntakeSettings, infra, namespace, dsn, relay_retry_max_seconds=1.0)
    settings.kafka_bootstrap_servers = broker.bootstrap
    topics = TopicReader(infra.kafka().as_bootstrap(broker.bootstrap), namespace)
    async with running(create_app(settings)) as intake:
        before = await intake.post(
            "/v1/cases", json=piura_adolescent_girl(), headers=auth("ong-amanecer")
        )
        await topics.for_case(Topic.CASES, before.json()["case_id"], 1)

        broker.stop()
        case_ids: list[str] = []
        for _ in range(8):
            created = await intake.post(
                "/v1/cases", json=piura_adolescent_girl(), headers=auth("ong-amanecer")
            )
            assert created.status_code == 201, created.text
            case_ids.append(created.json()["case_id"])
        for case_id in case_ids:
            withdrawn = await intake.post(
                f"/v1/cases/{case_id}/consent-withdrawal", json={}, headers=auth("ong-amanecer")
            )
            assert withdrawn.status_code == 200
        ready = await intake.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["kafka"] is False

        broker.start()
        records = await topics.wait_for(
            Topic.CASES,
            lambda rs: (
                {r.subject for r in rs if r.type == "case.consent_withdrawn"} >= set(case_ids)
            ),
            timeout=60,
            what="every event after the broker came back",
        )
        # "Published once" is an absence (no second copy): read again once the relay
        # has nothing left, so a late retry cannot land after the read.
        await poll_until(lambda: _outbox_rows(dsn), lambda n: n == 0, what="outbox published")
        records = await topics.read(Topic.CASES)

    mine = [r for r in records if r.subject in case_ids]
    ids = Counter(r.headers["ce_id"] for r in mine)
    assert len(mine) == 2 * len(case_ids)
    assert all(count == 1 for count in ids.values()), "an event was published twice"
    for case_id in case_ids:
        ordered = sorted((r for r in mine if r.subject == case_id), key=lambda r: r.offset)
        assert {r.partition for r in ordered} == {ordered[0].partition}
        assert [r.type for r in ordered] == ["case.created", "case.consent_withdrawn"]
