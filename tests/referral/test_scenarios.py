"""Both programmes end to end: a Piura adolescent girl, and a Honduran boy identified
in Guatemala with trafficking indicators, referred across the border to Honduras."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx

from contracts.topics import Topic
from tests.factories import guatemala_trafficking_boy, piura_adolescent_girl
from tests.helpers import TopicReader, auth
from tests.referral.conftest import by_service, disclosed, referrals_of, register


async def test_piura_unaccompanied_girl_with_violence_concerns(
    intake: httpx.AsyncClient, referral: httpx.AsyncClient, topics: TopicReader
) -> None:
    case_id = await register(intake, piura_adolescent_girl(), "ong-amanecer")
    outgoing = by_service(
        await referrals_of(referral, "ong-amanecer", case_id, 5, direction="outgoing")
    )
    assert {k: v["state"] for k, v in outgoing.items()} == {
        "upe-piura-proteccion": "sent",  # unaccompanied migrant child: mandatory
        "cem-piura-atencion": "sent",  # gender-based violence: mandatory
        "casa-refugio-acogida": "proposed",
        "ninas-lideres-empoderamiento": "proposed",
        "dsf-regularizacion": "proposed",
    }
    # psychosocial support was a stated need that Amanecer itself provides in Piura
    assert all(v["case_region"] == "PE-PIU" and not v["cross_border"] for v in outgoing.values())

    # The proposed receiver does not see a proposal.
    shelter = outgoing["casa-refugio-acogida"]
    hidden = await referral.get(
        f"/v1/referrals/{shelter['referral_id']}", headers=auth("casa-refugio-piura")
    )
    assert hidden.status_code == 404

    # The owner confirms the empowerment programme and drops the shelter.
    empowerment = outgoing["ninas-lideres-empoderamiento"]
    confirmed = await referral.post(
        f"/v1/referrals/{empowerment['referral_id']}/confirm", headers=auth("ong-amanecer")
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["state"] == "sent"
    dropped = await referral.post(
        f"/v1/referrals/{shelter['referral_id']}/cancel",
        json={"reason": "no_longer_needed"},
        headers=auth("ong-amanecer"),
    )
    assert dropped.status_code == 200, dropped.text

    (incoming,) = await referrals_of(referral, "ong-ninas-lideres", case_id, 1)
    assert incoming["state"] == "sent"
    assert incoming["your_role"] == "receiving"

    records = await topics.for_case(Topic.REFERRALS, case_id, 7)
    later = [(r.type, r.value["service_id"]) for r in records[5:]]
    assert later == [
        ("referral.sent", "ninas-lideres-empoderamiento"),
        ("referral.cancelled", "casa-refugio-acogida"),
    ]
    assert records[5].value["routing_rule"] == "girls-empowerment"
    assert records[5].value["mandatory"] is False
    assert records[6].value["reason"] == "no_longer_needed"


async def test_guatemala_trafficking_case_referred_to_honduras(
    intake: httpx.AsyncClient, referral: httpx.AsyncClient, topics: TopicReader
) -> None:
    case_id = await register(intake, guatemala_trafficking_boy(), "comunidad-segura-gt")
    outgoing = by_service(await referrals_of(referral, "comunidad-segura-gt", case_id, 5))
    assert {k: v["state"] for k, v in outgoing.items()} == {
        "uavt-gt-atencion": "sent",  # trafficking indicators: national victim-care unit
        "consulado-hn-gt-asistencia": "proposed",
        "esperanza-acogida": "proposed",
        "reencuentro-busqueda": "proposed",
        "uavt-hn-retorno": "proposed",
    }
    assert outgoing["uavt-gt-atencion"]["urgency"] == "critical"

    ret = outgoing["uavt-hn-retorno"]
    assert ret["cross_border"] is True
    assert (ret["case_country"], ret["service_country"]) == ("GT", "HN")
    confirmed = await referral.post(
        f"/v1/referrals/{ret['referral_id']}/confirm",
        headers={**auth("comunidad-segura-gt"), "If-Match": '"1"'},
    )
    assert confirmed.status_code == 200, confirmed.text

    url = f"/v1/referrals/{ret['referral_id']}"
    for step in ("acknowledge", "accept", "start"):
        response = await referral.post(f"{url}/{step}", headers=auth("uavt-hn"))
        assert response.status_code == 200, f"{step}: {response.text}"
    detail = await disclosed(referral, url, "uavt-hn")
    assert detail["state"] == "in_progress"
    assert detail["identity"]["child"]["given_names"] == "Kevin Alexander"
    closed = await referral.post(
        f"{url}/close", json={"outcome": "service_provided"}, headers=auth("uavt-hn")
    )
    assert closed.status_code == 200, closed.text

    records = await topics.for_case(Topic.REFERRALS, case_id, 10)
    mine = [r for r in records if r.value["referral_id"] == ret["referral_id"]]
    assert [r.type for r in mine] == [
        "referral.proposed",
        "referral.sent",
        "referral.acknowledged",
        "referral.accepted",
        "referral.started",
        "referral.closed",
    ]
    for record in mine:
        assert record.key == case_id
        assert record.value["case_country"] == "GT"
        assert record.value["service_country"] == "HN"
        assert record.value["cross_border"] is True
    sent = mine[1].value
    assert sent["urgency"] == "critical"
    respond_by = datetime.fromisoformat(sent["respond_by"])
    assert respond_by - datetime.fromisoformat(sent["occurred_at"]) == timedelta(hours=4)
