"""Real objects made through the public APIs before fuzzing, so that generated requests
can name them: cases registered through intake (tests/factories.py bodies), the
referrals referral routed for them, some walked to acceptance (intake then holds an
identity grant) or to closure (follow-up then schedules a check), the services that
take the case by hand, and the directory as operations see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from contracts.codes import ReferralState
from services.referral.domain.lifecycle import Action, Party, allowed_actions
from tests.factories import piura_adolescent_girl
from tests.helpers import auth, poll_until

OWNER = "ong-amanecer"  # registers every seeded case, so sends every seeded referral
OPERATIONS = "enlace-ops"
CASEWORKER = (OWNER, "cw-rosa")  # piura_adolescent_girl's caseworker
IDENTITY_PURPOSE = "service delivery"
TERMINAL = {"rejected", "closed", "cancelled"}
STEP_BODIES: dict[Action, dict[str, str]] = {
    Action.REJECT: {"reason": "no_capacity"},
    Action.CLOSE: {"outcome": "service_provided"},
    Action.CANCEL: {"reason": "no_longer_needed"},
}


@dataclass
class SeedReferral:
    referral_id: str
    case_id: str
    service_id: str
    sender: str
    receiver: str
    state: str
    version: int

    def party_key(self, party: Party) -> str:
        return self.sender if party is Party.SENDER else self.receiver

    def allows(self, action: Action, party: Party) -> bool:
        return action in allowed_actions(ReferralState(self.state), party)


@dataclass
class Seeds:
    cases: list[str]  # the owner's, consent intact
    withdrawable: list[str]  # the owner's, for consent withdrawals
    referrals: dict[str, SeedReferral]  # free for lifecycle steps
    reserved: dict[str, SeedReferral]  # accepted, holding the identity grants
    followups: list[str]
    hand_services: list[str]  # take the seeded profile by hand (POST /v1/referrals)
    organizations: list[dict[str, Any]]
    directory_version: int
    completed: set[str] = field(default_factory=set)
    # (case, service) pairs refused as already referred: an open referral this run
    # does not track.
    blocked_pairs: set[tuple[str, str]] = field(default_factory=set)

    def all_referrals(self) -> dict[str, SeedReferral]:
        return {**self.referrals, **self.reserved}

    def free_pairs(self) -> list[tuple[str, str]]:
        """(case, service) pairs a referral by hand may be made for: no open one."""
        open_ = {
            (r.case_id, r.service_id)
            for r in self.all_referrals().values()
            if r.state not in TERMINAL
        }
        taken = open_ | self.blocked_pairs
        return [(c, s) for c in self.cases for s in self.hand_services if (c, s) not in taken]

    def describe(self) -> str:
        return (
            f"seeded {len(self.cases) + len(self.withdrawable)} cases, "
            f"{len(self.all_referrals())} referrals, {len(self.followups)} follow-ups, "
            f"{len(self.hand_services)} services taking the case by hand"
        )


def as_seed(view: dict[str, Any]) -> SeedReferral:
    return SeedReferral(
        referral_id=view["referral_id"],
        case_id=view["case_id"],
        service_id=view["service_id"],
        sender=view["from_agency_id"],
        receiver=view["to_agency_id"],
        state=view["state"],
        version=view["version"],
    )


class Seeder:
    def __init__(self, client: httpx.AsyncClient, urls: dict[str, str]) -> None:
        self.client = client
        self.urls = urls

    async def register(self) -> str:
        answer = await self.client.post(
            f"{self.urls['intake']}/v1/cases", json=piura_adolescent_girl(), headers=auth(OWNER)
        )
        assert answer.status_code == 201, answer.text
        case_id: str = answer.json()["case_id"]
        return case_id

    async def routed(self, case_id: str) -> list[SeedReferral]:
        """The case's referrals, once referral routed it (all in one transaction)."""

        async def listed() -> list[dict[str, Any]]:
            answer = await self.client.get(
                f"{self.urls['referral']}/v1/referrals",
                params={"case_id": case_id, "direction": "outgoing"},
                headers=auth(OWNER),
            )
            assert answer.status_code == 200, answer.text
            items: list[dict[str, Any]] = answer.json()["items"]
            return items

        items = await poll_until(listed, timeout=60, interval=0.2, what=f"case {case_id} routed")
        return [as_seed(item) for item in items]

    async def step(self, referral: SeedReferral, action: Action, party: Party) -> None:
        answer = await self.client.post(
            f"{self.urls['referral']}/v1/referrals/{referral.referral_id}/{action.value}",
            json=STEP_BODIES.get(action),
            headers=auth(referral.party_key(party)),
        )
        assert answer.status_code == 200, f"{action.value}: {answer.status_code} {answer.text}"
        view = answer.json()
        referral.state, referral.version = view["state"], view["version"]

    async def accept(self, referral: SeedReferral) -> None:
        await self.step(referral, Action.ACKNOWLEDGE, Party.RECEIVER)
        await self.step(referral, Action.ACCEPT, Party.RECEIVER)

    async def hand_services(self, case_id: str, taken: set[str]) -> list[SeedReferral]:
        """Referrals by hand of `case_id` to every service of its region that takes it."""
        answer = await self.client.get(
            f"{self.urls['referral']}/v1/services",
            params={"country": "PE", "region": "PE-PIU", "accepting": "true"},
            headers=auth(OWNER),
        )
        assert answer.status_code == 200, answer.text
        made = []
        for offer in answer.json():
            service_id = offer["service"]["id"]
            if service_id in taken:
                continue
            sent = await self.client.post(
                f"{self.urls['referral']}/v1/referrals",
                json={"case_id": case_id, "service_id": service_id},
                headers=auth(OWNER),
            )
            if sent.status_code == 201:
                made.append(as_seed(sent.json()))
        return made

    async def followups(self, count: int) -> list[str]:
        async def listed() -> list[dict[str, Any]]:
            answer = await self.client.get(
                f"{self.urls['followup']}/v1/followups", headers=auth(OWNER)
            )
            assert answer.status_code == 200, answer.text
            items: list[dict[str, Any]] = answer.json()
            return items

        items = await poll_until(
            listed, lambda rows: len(rows) >= count, timeout=60, interval=0.2, what="follow-ups"
        )
        return [row["followup_id"] for row in items if row["status"] != "completed"]

    async def granted(self, referral: SeedReferral) -> None:
        """Until intake holds the identity grant of an accepted referral."""

        async def disclosed() -> int:
            answer = await self.client.get(
                f"{self.urls['intake']}/internal/v1/cases/{referral.case_id}/identity",
                params={
                    "on_behalf_of": referral.receiver,
                    "purpose": IDENTITY_PURPOSE,
                    "referral_id": referral.referral_id,
                },
                headers=auth("svc-referral"),
            )
            return answer.status_code

        await poll_until(
            disclosed, lambda s: s == 200, timeout=60, interval=0.2, what="identity grant"
        )

    async def directory(self) -> dict[str, Any]:
        answer = await self.client.get(
            f"{self.urls['referral']}/v1/admin/directory", headers=auth(OPERATIONS)
        )
        assert answer.status_code == 200, answer.text
        directory: dict[str, Any] = answer.json()
        return directory


async def seed(urls: dict[str, str], *, cases: int = 6, withdrawable: int = 2) -> Seeds:
    async with httpx.AsyncClient(timeout=15) as client:
        seeder = Seeder(client, urls)
        case_ids = [await seeder.register() for _ in range(cases + withdrawable)]
        referrals: list[SeedReferral] = []
        for case_id in case_ids[:cases]:
            referrals += await seeder.routed(case_id)
        routed_services = {r.service_id for r in referrals}
        hand = await seeder.hand_services(case_ids[0], routed_services)
        assert hand, "no service of PE-PIU takes the seeded case by hand"
        referrals += hand
        sent = [r for r in referrals if r.state == "sent"]
        assert len(sent) >= 8, f"too few sent referrals to seed: {len(sent)}"
        to_close, to_keep = sent[:3], sent[3:5]
        for referral in to_close:
            await seeder.accept(referral)
            await seeder.step(referral, Action.CLOSE, Party.RECEIVER)
        for referral in to_keep:
            await seeder.accept(referral)
        for referral in to_keep:
            await seeder.granted(referral)
        followups = await seeder.followups(len(to_close))
        directory = await seeder.directory()
    reserved = {r.referral_id: r for r in to_keep}
    return Seeds(
        cases=case_ids[:cases],
        withdrawable=case_ids[cases:],
        referrals={r.referral_id: r for r in referrals if r.referral_id not in reserved},
        reserved=reserved,
        followups=followups,
        hand_services=[r.service_id for r in hand],
        organizations=directory["organizations"],
        directory_version=directory["version"],
    )
