"""From a partner's POST to a caseworker's phone, with the four services running as
`make run` runs them: separate processes started by deploy/local/services.sh, the
local SMTP server keeping a Maildir and the local SMS provider keeping a JSONL log.

The stack is private to this module (its own ports, databases, topics, consumer
groups and state directory), so it runs beside a developer's `make run`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from contracts.topics import Topic
from tests.conftest import RUN_ID
from tests.e2e.stack import CEM_DESK, UPE_DESK, Stack, deliveries_done, private_stack
from tests.factories import piura_adolescent_girl
from tests.helpers import TopicReader, auth, poll_until
from tests.infra import Infra


@pytest.fixture(scope="module")
async def stack(infra: Infra, namespace: str) -> AsyncIterator[Stack]:
    if infra.source != "local":
        pytest.skip("services.sh runs the services on the local runtime of deploy/local")
    async with private_stack(infra, namespace, f"e2e-{RUN_ID}") as running:
        yield running


async def _register(stack: Stack, http: httpx.AsyncClient) -> dict[str, Any]:
    answer = await http.post(
        f"{stack.urls['intake']}/v1/cases",
        json=piura_adolescent_girl(),
        headers=auth("ong-amanecer"),
    )
    assert answer.status_code == 201, answer.text
    receipt: dict[str, Any] = answer.json()
    return receipt


async def test_post_case_to_sms_and_email_once_each(
    stack: Stack, http: httpx.AsyncClient, topics: TopicReader
) -> None:
    receipt = await _register(stack, http)
    case_id, reference = receipt["case_id"], receipt["reference"]

    sent = await topics.wait_for(
        Topic.REFERRALS,
        lambda rs: len([r for r in rs if r.subject == case_id and r.type == "referral.sent"]) >= 2,
        timeout=60,
        what="both mandatory referrals sent",
    )
    services = {r.value["service_id"] for r in sent if r.subject == case_id}
    assert {UPE_DESK[1], CEM_DESK[1]} <= services

    # Two desks, each told by SMS and by e-mail: four deliveries, all accepted.
    log = await deliveries_done(stack, http, case_id, 4)
    by_desk = {(r["recipient_id"], r["channel"]) for r in log}
    assert by_desk == {
        (UPE_DESK[2], "sms"),
        (UPE_DESK[2], "email"),
        (CEM_DESK[2], "sms"),
        (CEM_DESK[2], "email"),
    }
    # Every accepted delivery is one message at the provider, no more.
    for _, _, _, phone in (UPE_DESK, CEM_DESK):
        texts = stack.texts_about(reference, to=phone)
        assert len(texts) == 1, texts
        assert "Daniela" not in texts[0]["body"]
        assert "Rojas" not in texts[0]["body"]
    assert len(stack.texts_about(reference)) == 2
    mails = stack.mails_about(reference)
    assert sorted(str(m["To"]) for m in mails) == [
        "admision@cem-piura.example.org",
        "mesadepartes@upe-piura.example.org",
    ]
    upe_mail = stack.mails_about(reference, to="mesadepartes@upe-piura.example.org")[0]
    assert upe_mail["Message-ID"]
    assert "Daniela" not in upe_mail.as_string()


async def test_a_contact_point_edited_through_the_admin_api_gets_the_next_sms(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    """Directory edits reach the notifications process without a restart and
    without a staff number travelling on a topic."""
    ops = auth("enlace-ops")
    directory = await http.get(f"{stack.urls['referral']}/v1/admin/directory", headers=ops)
    assert directory.status_code == 200, directory.text
    (upe,) = [o for o in directory.json()["organizations"] if o["id"] == UPE_DESK[0]]
    new_phone = "+51911009999"
    for service in upe["services"]:
        for contact in service["contacts"]:
            if contact["id"] == UPE_DESK[2]:
                contact["phone"] = new_phone
    saved = await http.put(
        f"{stack.urls['referral']}/v1/admin/directory/organizations/{UPE_DESK[0]}",
        json=upe,
        headers=ops,
    )
    assert saved.status_code == 200, saved.text
    after = await http.get(f"{stack.urls['referral']}/v1/admin/directory", headers=ops)
    version = after.json()["version"]

    async def notifications_version() -> float:
        metrics = await http.get(f"{stack.urls['notifications']}/metrics")
        for line in metrics.text.splitlines():
            if line.startswith("enlace_contact_directory_version "):
                return float(line.split()[1])
        return -1.0

    await poll_until(
        notifications_version,
        lambda seen: seen >= version,
        timeout=30,
        what=f"notifications following directory version {version}",
    )
    receipt = await _register(stack, http)
    await deliveries_done(stack, http, receipt["case_id"], 4)
    reference = receipt["reference"]
    # The UPE desk's text went to the new number; its old number got nothing about it
    # (the delivery log says all four messages were accepted, so none is on its way).
    assert len(stack.texts_about(reference, to=new_phone)) == 1
    assert stack.texts_about(reference, to=UPE_DESK[3]) == []
    assert len(stack.texts_about(reference, to=CEM_DESK[3])) == 1
