"""The canary: a child whose given name is a unique string is registered, referred,
accepted (so the identity was disclosed and audited) and erased; then every
artifact of the run is searched for that name, plain, JSON-escaped and base64:
a `pg_dump` of the four databases, Kafka's segment files of the run's topics, every
service log, PostgreSQL's log, the Maildir and the SMS log. It is found nowhere,
and the case and its identity answer as erased.

The stack is this module's own and is stopped before the search, so every log is
complete (a process's buffered output is written when it exits).
"""

from __future__ import annotations

import base64
import glob
import json
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from contracts.topics import Topic
from tests.conftest import RUN_ID, fresh_namespace
from tests.e2e.stack import REPO, SERVICES, UPE_DESK, Stack, deliveries_done, private_stack
from tests.factories import piura_adolescent_girl
from tests.helpers import TopicReader, auth, poll_until
from tests.infra import Infra

LOCAL = REPO / ".local"
PG_LOG = LOCAL / "pg" / "postgres.log"


@pytest.fixture(scope="module")
async def namespace(infra: Infra) -> AsyncIterator[str]:
    """Topics of this module's own: the other end-to-end stack must not route this
    module's cases (its consumer groups read the package's topics from the start)."""
    async with fresh_namespace(infra, f"test-{RUN_ID}-canary") as ns:
        yield ns


@pytest.fixture(scope="module")
async def stack(infra: Infra, namespace: str) -> AsyncIterator[Stack]:
    if infra.source != "local":
        pytest.skip("services.sh runs the services on the local runtime of deploy/local")
    async with private_stack(infra, namespace, f"canary-{RUN_ID}") as running:
        yield running


def forms(canary: str) -> dict[str, bytes]:
    """The canary as it would appear if leaked: UTF-8, JSON-escaped (\\u00f1), and
    base64 at each of the three alignments a longer text could put it in."""
    raw = canary.encode()
    found = {"plain": raw, "json": json.dumps(canary).strip('"').encode()}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        # Drop the characters that mix in the neighbouring bytes at either end.
        lead = (shift * 8 + 5) // 6
        found[f"base64+{shift}"] = encoded[lead : lead + (len(raw) * 8) // 6 - 4]
    return found


def files_under(*patterns: str) -> Iterator[Path]:
    for pattern in patterns:
        for name in glob.glob(pattern, recursive=True):
            path = Path(name)
            if path.is_file():
                yield path


def _major(path: str) -> int:
    return int(Path(path).parents[1].name)


def pg_dump(infra: Infra, database: str) -> bytes:
    # The newest Debian server's pg_dump (the cluster's own version), else any on PATH.
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"), key=_major)
    binary = found[-1] if found else shutil.which("pg_dump")
    assert binary, "pg_dump not found"
    dsn = infra.pg_admin_dsn.rsplit("/", 1)[0] + f"/{database}"
    return subprocess.run(
        [binary, "--dbname", dsn, "--no-owner"], capture_output=True, check=True, timeout=120
    ).stdout


async def _db(infra: Infra, database: str) -> asyncpg.Connection:
    return await asyncpg.connect(infra.pg_admin_dsn.rsplit("/", 1)[0] + f"/{database}")


async def test_an_erased_childs_name_is_found_nowhere(
    stack: Stack, http: httpx.AsyncClient, infra: Infra, namespace: str, topics: TopicReader
) -> None:
    canary = f"Zoraidañ{uuid.uuid4().hex[:12]}"
    pg_log_start = PG_LOG.stat().st_size if PG_LOG.exists() else 0
    child = {**piura_adolescent_girl()["child"], "given_names": canary}
    guardian = {"name": f"Rosa {canary}", "relationship": "madre", "phone": "+51987650002"}
    registered = await http.post(
        f"{stack.urls['intake']}/v1/cases",
        json=piura_adolescent_girl(child=child, guardian=guardian),
        headers=auth("ong-amanecer"),
    )
    assert registered.status_code == 201, registered.text
    case_id = registered.json()["case_id"]

    # The special protection unit accepts its referral and reads the child's identity.
    async def outgoing() -> list[dict[str, Any]]:
        answer = await http.get(
            f"{stack.urls['referral']}/v1/referrals",
            params={"case_id": case_id},
            headers=auth("ong-amanecer"),
        )
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["items"]
        return items

    items = await poll_until(
        outgoing,
        lambda found: any(i["service_id"] == UPE_DESK[1] for i in found),
        timeout=60,
        what="the referral to the special protection unit",
    )
    upe = f"{stack.urls['referral']}/v1/referrals/" + next(
        i["referral_id"] for i in items if i["service_id"] == UPE_DESK[1]
    )
    for step in ("acknowledge", "accept"):
        answer = await http.post(f"{upe}/{step}", headers=auth(UPE_DESK[0]))
        assert answer.status_code == 200, answer.text

    async def view() -> dict[str, Any]:
        answer = await http.get(upe, headers=auth(UPE_DESK[0]))
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    disclosed = await poll_until(
        view, lambda v: v["identity_status"] != "unavailable", timeout=30, what="disclosure"
    )
    assert disclosed["identity"]["child"]["given_names"] == canary  # disclosed, audited
    await deliveries_done(stack, http, case_id, 4)  # the desks were told (SMS and e-mail)

    erased = await http.post(
        f"{stack.urls['intake']}/v1/cases/{case_id}/erasure",
        json={"reason": "data_subject_request"},
        headers=auth("ong-amanecer"),
    )
    assert erased.status_code == 200, erased.text

    # Every service applied it and recorded so; the open referrals were cancelled.
    for service in SERVICES:
        conn = await _db(infra, stack.databases[service])
        try:

            async def recorded(conn: asyncpg.Connection = conn) -> int:
                return int(
                    await conn.fetchval(
                        "SELECT count(*) FROM erasures WHERE case_id = $1", uuid.UUID(case_id)
                    )
                )

            await poll_until(recorded, bool, timeout=60, what=f"{service} applied the erasure")
        finally:
            await conn.close()
    await topics.wait_for(
        Topic.REFERRALS,
        lambda rs: any(
            r.subject == case_id
            and r.type == "referral.cancelled"
            and r.value["service_id"] == UPE_DESK[1]
            and r.value["reason"] == "erased"
            for r in rs
        ),
        timeout=60,
        what="the accepted referral cancelled as erased",
    )
    # The case and its identity answer as erased.
    case = await http.get(
        f"{stack.urls['intake']}/v1/cases/{case_id}", headers=auth("ong-amanecer")
    )
    assert case.status_code == 410, case.text
    after = await view()
    assert (after["identity"], after["identity_status"], after["state"]) == (
        None,
        "erased",
        "cancelled",
    )

    stack.stop()  # every log complete

    artifacts: dict[str, bytes] = {
        f"pg_dump {stack.databases[s]}": pg_dump(infra, stack.databases[s]) for s in SERVICES
    }
    topic_files = str(LOCAL / "kafka" / "**" / f"{namespace}.*" / "*")
    for path in files_under(topic_files, str(stack.state / "**" / "*")):
        artifacts[str(path.relative_to(REPO))] = path.read_bytes()
    if PG_LOG.exists():
        with PG_LOG.open("rb") as log:
            log.seek(pg_log_start)
            artifacts["PostgreSQL log (this run)"] = log.read()

    # The search looks where the case went: each kind of artifact holds the case.
    reference = registered.json()["reference"].encode()
    controls = {
        "pg_dump": ("pg_dump", case_id.encode()),
        "Kafka segment": (f"{namespace}.", case_id.encode()),
        "service log": ("/logs/intake.log", case_id.encode()),
        "Maildir": ("/mail/", reference),
        "SMS log": ("/sms/", reference),
    }
    for kind, (where, mark) in controls.items():
        assert any(where in name and mark in body for name, body in artifacts.items()), (
            f"no {kind} of this run mentions the case: the search would prove nothing"
        )
    leaks = [
        f"{form} in {name}"
        for name, content in artifacts.items()
        for form, needle in forms(canary).items()
        if needle in content
    ]
    assert leaks == [], f"the erased child's name is still in: {leaks}"
