"""Partner API details: versions and ETags, impossible transitions, bad input,
pagination, the directory and its admin API."""

from __future__ import annotations

import asyncpg
import httpx

from tests.factories import guatemala_trafficking_boy
from tests.helpers import auth, poll_until
from tests.referral.conftest import by_service, referrals_of, register


async def test_versions_transitions_and_bad_input(
    intake: httpx.AsyncClient, referral: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    case_id = await register(intake, guatemala_trafficking_boy(), "comunidad-segura-gt")
    (uavt,) = await referrals_of(referral, "uavt-gt", case_id, 1, direction="incoming")
    url = f"/v1/referrals/{uavt['referral_id']}"
    read = await referral.get(url, headers=auth("uavt-gt"))
    assert read.headers["ETag"] == '"1"'

    too_early = await referral.post(
        f"{url}/close", json={"outcome": "service_provided"}, headers=auth("uavt-gt")
    )
    assert too_early.status_code == 409
    assert too_early.json()["current_state"] == "sent"
    assert too_early.json()["allowed_from"] == ["accepted", "in_progress"]

    assert (await referral.post(f"{url}/acknowledge", headers=auth("uavt-gt"))).status_code == 200
    stale = await referral.post(f"{url}/accept", headers={**auth("uavt-gt"), "If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.json()["current_version"] == 2

    bad_reason = await referral.post(
        f"{url}/reject", json={"reason": "busy"}, headers=auth("uavt-gt")
    )
    assert bad_reason.status_code == 422
    assert bad_reason.json()["errors"][0]["field"] == "reason"
    unknown_field = await referral.post(
        f"{url}/reject", json={"reason": "no_capacity", "x": 1}, headers=auth("uavt-gt")
    )
    assert unknown_field.status_code == 422
    assert unknown_field.json()["errors"][0]["field"] == "x"
    row = await db.fetchrow(
        "SELECT state, version FROM referrals WHERE referral_id = $1::uuid", uavt["referral_id"]
    )
    assert row is not None
    assert (row["state"], row["version"]) == ("acknowledged", 2)  # nothing written

    rejected = await referral.post(
        f"{url}/reject",
        json={"reason": "no_capacity"},
        headers={**auth("uavt-gt"), "If-Match": 'W/"2"'},
    )
    assert rejected.status_code == 200
    assert rejected.json()["rejection_reason"] == "no_capacity"

    by_hand = await referral.post(
        "/v1/referrals",
        headers=auth("comunidad-segura-gt"),
        json={"case_id": case_id, "service_id": "nope-nope"},
    )
    assert by_hand.status_code == 422
    assert by_hand.json()["errors"][0]["field"] == "service_id"
    wrong_country = await referral.post(
        "/v1/referrals",
        headers=auth("comunidad-segura-gt"),
        json={"case_id": case_id, "service_id": "uavt-do-atencion"},
    )
    assert wrong_country.status_code == 422
    assert "does not take cases from GT-01" in wrong_country.json()["errors"][0]["message"]
    again = await referral.post(
        "/v1/referrals",
        headers=auth("comunidad-segura-gt"),
        json={"case_id": case_id, "service_id": "uavt-gt-atencion"},
    )
    assert again.status_code == 201, again.text  # the rejected one is closed: refer again
    assert again.json()["state"] == "sent"
    assert again.json()["routing_rule"] is None


async def test_pagination_with_a_cursor(
    intake: httpx.AsyncClient, referral: httpx.AsyncClient
) -> None:
    case_id = await register(intake, guatemala_trafficking_boy(), "comunidad-segura-gt")
    expected = by_service(await referrals_of(referral, "comunidad-segura-gt", case_id, 5))
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"case_id": case_id, "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (
            await referral.get("/v1/referrals", params=params, headers=auth("comunidad-segura-gt"))
        ).json()
        seen += [item["service_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(expected)
    proposed = await referral.get(
        "/v1/referrals",
        headers=auth("comunidad-segura-gt"),
        params={"case_id": case_id, "state": "proposed"},
    )
    assert len(proposed.json()["items"]) == 4
    bad = await referral.get("/v1/referrals", params={"cursor": "???"}, headers=auth("uavt-gt"))
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.cursor"
    bad_state = await referral.get(
        "/v1/referrals", params={"state": "lost"}, headers=auth("uavt-gt")
    )
    assert bad_state.json()["errors"][0]["field"] == "query.state.0"


async def test_directory_search_and_admin(referral: httpx.AsyncClient) -> None:
    cross = await referral.get(
        "/v1/services",
        params={"type": "safe_return", "country": "GT"},
        headers=auth("comunidad-segura-gt"),
    )
    assert cross.status_code == 200
    assert {s["service"]["id"] for s in cross.json()} == {
        "uavt-gt-retorno",
        "uavt-hn-retorno",
        "uavt-sv-retorno",
    }
    piura = await referral.get(
        "/v1/services", params={"region": "PE-PIU"}, headers=auth("demuna-piura")
    )
    assert "upe-piura-proteccion" in {s["service"]["id"] for s in piura.json()}
    assert "upe-lima-proteccion" not in {s["service"]["id"] for s in piura.json()}
    bad = await referral.get("/v1/services", params={"country": "XX"}, headers=auth("upe-lima"))
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.country"

    ops = auth("enlace-ops")
    directory = (await referral.get("/v1/admin/directory", headers=ops)).json()
    org = next(o for o in directory["organizations"] if o["id"] == "uavt-ni")
    paused = {**org, "services": [{**s, "accepting_referrals": False} for s in org["services"]]}
    mismatch = await referral.put(
        "/v1/admin/directory/organizations/uavt-do", json=paused, headers=ops
    )
    assert mismatch.status_code == 422
    assert mismatch.json()["errors"][0]["field"] == "id"
    saved = await referral.put(
        "/v1/admin/directory/organizations/uavt-ni", json=paused, headers=ops
    )
    assert saved.status_code == 200, saved.text
    try:
        accepting = await referral.get(
            "/v1/services", headers=auth("uavt-ni"), params={"country": "NI", "accepting": "true"}
        )
        assert "uavt-ni-atencion" not in {s["service"]["id"] for s in accepting.json()}
        duplicate = {**org, "services": [*org["services"], org["services"][0]]}
        clash = await referral.put(
            "/v1/admin/directory/organizations/uavt-ni", json=duplicate, headers=ops
        )
        assert clash.status_code == 422
        assert "duplicate service id" in clash.json()["errors"][0]["message"]
    finally:
        restored = await referral.put(
            "/v1/admin/directory/organizations/uavt-ni", json=org, headers=ops
        )
        assert restored.status_code == 200

    async def ni_accepting() -> bool:
        response = await referral.get(
            "/v1/services", headers=auth("uavt-ni"), params={"country": "NI", "accepting": "true"}
        )
        return "uavt-ni-atencion" in {s["service"]["id"] for s in response.json()}

    await poll_until(ni_accepting, what="the directory to be restored")


async def test_contact_directory_for_enlace_services_only(referral: httpx.AsyncClient) -> None:
    url = "/internal/v1/contact-directory"
    for caller in ("uavt-gt", "enlace-ops", "svc-followup", "svc-referral"):
        refused = await referral.get(url, headers=auth(caller))
        assert refused.status_code == 404, caller
    unauthenticated = await referral.get(url)
    assert unauthenticated.status_code == 401

    served = await referral.get(url, headers=auth("svc-notifications"))
    assert served.status_code == 200, served.text
    body = served.json()
    assert served.headers["ETag"] == f'"{body["version"]}"'
    assert set(body) == {"version", "organizations"}
    contact_keys = {"id", "name", "phone", "email", "language", "time_zone", "channels"}
    for org in body["organizations"]:
        assert set(org) == {"id", "name", "focal_point", "supervisor", "services"}
        assert set(org["focal_point"]) == contact_keys
        for service in org["services"]:
            assert set(service) == {"id", "contacts"}
            assert all(set(c) == contact_keys for c in service["contacts"])
    upe = next(o for o in body["organizations"] if o["id"] == "upe-piura")
    assert upe["services"][0]["contacts"]

    for tag in (
        served.headers["ETag"],
        f"W/{served.headers['ETag']}",
        '"0", ' + served.headers["ETag"],
    ):
        unchanged = await referral.get(
            url, headers={**auth("svc-notifications"), "If-None-Match": tag}
        )
        assert unchanged.status_code == 304, tag
        assert unchanged.headers["ETag"] == served.headers["ETag"]
        assert unchanged.content == b""
    other = await referral.get(url, headers={**auth("svc-notifications"), "If-None-Match": '"0"'})
    assert other.status_code == 200
    assert other.json() == body
