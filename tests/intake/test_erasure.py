"""Erasure: the registering agency (or operations, with a documented basis) erases a
case; its data key is gone, every API answers 410, its grants end, the audit stays
and `case.erased` goes on the real topic. Retention erases cases whose referrals all
ended long ago, listed first by a dry run."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jsonschema
import pytest

from contracts import events as ev
from contracts.topics import Topic
from services.intake import commands
from services.intake.domain import CaseRegistration
from services.kit.clock import MovableClock
from tests.factories import piura_adolescent_girl
from tests.helpers import TopicReader, auth, consumed
from tests.intake.conftest import Referral, ReferralTopic, fresh_intake_db, fresh_vault

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "contracts" / "schemas" / "case.erased.v1.json").read_text())
PROBLEM = "application/problem+json"


async def _register(intake: httpx.AsyncClient, agency: str = "ong-amanecer") -> uuid.UUID:
    created = await intake.post("/v1/cases", json=piura_adolescent_girl(), headers=auth(agency))
    assert created.status_code == 201, created.text
    return uuid.UUID(created.json()["case_id"])


async def _erase(
    intake: httpx.AsyncClient, case_id: uuid.UUID, caller: str = "ong-amanecer", **body: Any
) -> httpx.Response:
    return await intake.post(
        f"/v1/cases/{case_id}/erasure",
        json={"reason": "data_subject_request", **body},
        headers=auth(caller),
    )


def _identity(intake: httpx.AsyncClient, case_id: uuid.UUID) -> Any:
    return intake.get(
        f"/internal/v1/cases/{case_id}/identity",
        params={"on_behalf_of": "upe-piura", "purpose": "accepted referral"},
        headers=auth("svc-referral"),
    )


async def test_the_registering_agency_erases_a_case_for_good(
    intake: httpx.AsyncClient,
    intake_db: asyncpg.Pool,
    referral_topic: ReferralTopic,
    topics: TopicReader,
) -> None:
    case_id = await _register(intake)
    referral = Referral(case_id)
    events = await referral_topic.publish(*referral.accepted())
    await consumed(intake_db, events[-1].id)
    assert (await _identity(intake, case_id)).status_code == 200  # disclosed, audited

    erased = await _erase(intake, case_id)

    assert erased.status_code == 200, erased.text
    body = erased.json()
    assert (body["case_id"], body["reason"]) == (str(case_id), "data_subject_request")
    # Every API answers that the case was erased.
    for answer in (
        await intake.get(f"/v1/cases/{case_id}", headers=auth("ong-amanecer")),
        await _identity(intake, case_id),
        await intake.post(
            f"/v1/cases/{case_id}/consent-withdrawal", json={}, headers=auth("ong-amanecer")
        ),
    ):
        assert answer.status_code == 410, answer.text
        assert answer.headers["content-type"] == PROBLEM
        assert answer.json()["title"] == "Case erased"
        assert "Daniela" not in answer.text
    # The data key and everything derived from the identity are gone; the audit stays.
    row = await intake_db.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
    assert row is not None
    assert (row["sealed"], row["dedup_key"], row["erased_at"]) == (
        None,
        None,
        datetime.fromisoformat(body["erased_at"]),
    )
    assert await intake_db.fetchval("SELECT count(*) FROM case_keys WHERE case_id=$1", case_id) == 0
    audit = await intake_db.fetchrow("SELECT * FROM erasures WHERE case_id = $1", case_id)
    assert audit is not None
    assert (audit["requested_by"], audit["requester_role"], audit["basis"]) == (
        "ong-amanecer",
        "agency",
        None,
    )
    assert (
        await intake_db.fetchval("SELECT count(*) FROM disclosures WHERE case_id = $1", case_id)
        == 1
    )
    grant = await intake_db.fetchrow(
        "SELECT end_reason FROM grants WHERE referral_id = $1", referral.referral_id
    )
    assert grant is not None
    assert grant["end_reason"] == "erased"
    # Announced once, as the contract says, with nothing that names the child.
    (announced,) = [
        r for r in await topics.for_case(Topic.CASES, str(case_id), 2) if r.type == "case.erased"
    ]
    jsonschema.validate(announced.value, SCHEMA)
    assert announced.headers["ce_source"] == "/enlace/intake"
    assert announced.value["reason"] == "data_subject_request"
    # A repeat answers with the first erasure and announces nothing more.
    again = await _erase(intake, case_id)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == body
    outbox = await intake_db.fetchval("SELECT last_value FROM outbox_seq_seq")
    assert (await _erase(intake, case_id)).status_code == 200
    assert await intake_db.fetchval("SELECT last_value FROM outbox_seq_seq") == outbox


async def test_operations_erase_with_a_documented_basis_and_agencies_only_their_own(
    intake: httpx.AsyncClient, intake_db: asyncpg.Pool
) -> None:
    case_id = await _register(intake)
    other_agency = await _erase(intake, case_id, caller="cem-piura")
    assert other_agency.status_code == 404
    service_key = await _erase(intake, case_id, caller="svc-referral")
    assert service_key.status_code == 403

    no_basis = await _erase(intake, case_id, caller="enlace-ops", reason="legal_order")
    assert no_basis.status_code == 422
    assert no_basis.json()["errors"][0]["field"] == "basis"

    done = await _erase(
        intake, case_id, caller="enlace-ops", reason="legal_order", basis="Oficio 0421-2026"
    )
    assert done.status_code == 200, done.text
    audit = await intake_db.fetchrow("SELECT * FROM erasures WHERE case_id = $1", case_id)
    assert audit is not None
    assert (audit["requested_by"], audit["requester_role"], audit["basis"]) == (
        "enlace-ops",
        "operations",
        "Oficio 0421-2026",
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "retention_period_ended"}, "reason"),
        ({"reason": "forgotten"}, "reason"),
        ({"reason": "data_subject_request", "basis": "Oficio 1"}, "basis"),
        ({"reason": "data_subject_request", "name": "Daniela"}, "name"),
    ],
    ids=["retention-reason", "unknown-reason", "agency-basis", "extra-field"],
)
async def test_a_bad_erasure_request_names_the_field_and_erases_nothing(
    intake: httpx.AsyncClient, intake_db: asyncpg.Pool, body: dict[str, Any], field: str
) -> None:
    case_id = await _register(intake)
    refused = await intake.post(
        f"/v1/cases/{case_id}/erasure", json=body, headers=auth("ong-amanecer")
    )
    assert refused.status_code == 422, refused.text
    assert field in [e["field"] for e in refused.json()["errors"]]
    assert "Daniela" not in refused.text
    assert await intake_db.fetchval("SELECT count(*) FROM case_keys WHERE case_id=$1", case_id) == 1
    assert (
        await intake.get(f"/v1/cases/{case_id}", headers=auth("ong-amanecer"))
    ).status_code == 200


# --- retention -------------------------------------------------------------------------


@pytest.fixture
async def own_db(databases: Callable[[str], Any]) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """A database of its own: retention looks at every case it holds."""
    async with fresh_intake_db(databases) as db:
        yield db


async def _cli(dsn: str, *args: str) -> Any:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.intake",
        *args,
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": dsn, "ENLACE_RETENTION_MONTHS": "24"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return json.loads(out)


async def test_retention_lists_then_erases_cases_whose_referrals_all_ended_long_ago(
    own_db: tuple[str, asyncpg.Pool],
) -> None:
    dsn, pool = own_db
    vault = fresh_vault()
    clock = MovableClock(datetime.now(UTC) - timedelta(days=3 * 365))

    async def register() -> uuid.UUID:
        command = commands.RegisterCase(
            registration=CaseRegistration.model_validate(
                piura_adolescent_girl(
                    consent={
                        **piura_adolescent_girl()["consent"],
                        "recorded_at": (clock.now() - timedelta(hours=1)).isoformat(),
                    },
                    child={
                        **piura_adolescent_girl()["child"],
                        "birth_date": (clock.now() - timedelta(days=15 * 365)).date().isoformat(),
                    },
                )
            ),
            agency_id="ong-amanecer",
        )
        done = await commands.register_case(
            pool, command, clock=clock, source="/enlace/intake", vault=vault
        )
        return done.receipt.case_id

    async def apply(*events: ev.ReferralEventV1) -> None:
        async with pool.acquire() as conn:
            for event in events:
                async with conn.transaction():
                    await commands.record_referral_event(conn, event)

    closed_long_ago, still_open, never_referred = (
        await register(),
        await register(),
        await register(),
    )
    done = Referral(closed_long_ago)
    await apply(*done.accepted(), done.step(ev.ReferralStartedV1))
    closing = done.step(ev.ReferralClosedV1).model_copy(update={"occurred_at": clock.now()})
    await apply(closing)
    await apply(*Referral(still_open).accepted())
    recent = await register()  # closed a month ago: kept
    clock.set(datetime.now(UTC) - timedelta(days=30))
    late = Referral(recent)
    await apply(late.step(ev.ReferralSentV1))
    await apply(late.step(ev.ReferralCancelledV1).model_copy(update={"occurred_at": clock.now()}))

    # Registered before intake tracked referrals: whether one is open is unknown.
    await pool.execute(
        """INSERT INTO cases (case_id, reference, agency_id, external_id, country, region,
                              risk_level, registration, registered_at, referrals_tracked)
           VALUES ($1, 'PE-PIU-2020-000001', 'ong-amanecer', 'OLD-1', 'PE', 'PE-PIU',
                   'high', '{}', now() - interval '5 years', false)""",
        uuid.uuid4(),
    )

    dry = await _cli(dsn, "retention", "--dry-run")

    listed = {c["case_id"] for c in dry["would_erase"]}
    assert listed == {str(closed_long_ago), str(never_referred)}
    assert dry["retention_months"] == 24
    assert await pool.fetchval("SELECT count(*) FROM erasures") == 0  # a dry run erases nothing

    erased = await _cli(dsn, "retention")

    assert {e["case_id"] for e in erased["erased"]} == listed
    reasons = await pool.fetch("SELECT case_id, reason, requester_role FROM erasures")
    assert {(r["case_id"], r["reason"], r["requester_role"]) for r in reasons} == {
        (closed_long_ago, "retention_period_ended", "retention"),
        (never_referred, "retention_period_ended", "retention"),
    }
    events = await pool.fetch("SELECT subject FROM outbox WHERE event_type = 'case.erased'")
    assert {r["subject"] for r in events} == {str(closed_long_ago), str(never_referred)}
    assert (await _cli(dsn, "retention", "--dry-run"))["would_erase"] == []
