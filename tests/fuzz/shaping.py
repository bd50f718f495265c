"""Point a share of generated requests at seeded objects: two in three name a seeded
case, referral, follow-up, organisation or caseworker (the rest keep their generated
ids, which name nothing), with the key of the party that may act on it. Lifecycle
steps pick a referral whose state allows the step, until a few steps of each kind
succeeded; after that they pick one that does not (the conflict path)."""

from __future__ import annotations

import copy
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemathesis import Case

from contracts.codes import RiskLevel
from services.notifications.channels.sms import sign_request
from services.referral.domain.lifecycle import TRANSITIONS, Action
from tests.factories import piura_adolescent_girl
from tests.fuzz.seeds import CASEWORKER, IDENTITY_PURPOSE, SeedReferral

if TYPE_CHECKING:
    from tests.fuzz.fuzzer import Fuzzer

# Successful steps of each kind the fuzzer aims at before it tries refused ones, so
# that one action does not use up the referrals the next ones need (acknowledged
# referrals feed both accept and reject).
STEPS = {Action.ACKNOWLEDGE: 6}
STEPS_PER_ACTION = 3
FORM = "application/x-www-form-urlencoded"
AnyCase = Case[Any]


@dataclass
class Seeded:
    """What a request was pointed at, and what to learn from the answer."""

    what: str
    on_answer: Callable[[int, Any], None] | None = None

    def observe(self, status: int, body: Any) -> None:
        if self.on_answer is not None:
            self.on_answer(status, body)


def _pick(items: list[Any], n: int) -> Any:
    return items[n % len(items)]


class Shaper:
    def __init__(self, fuzzer: Fuzzer) -> None:
        self.fuzzer = fuzzer
        self.seeds = fuzzer.seeds
        self.steps: Counter[Action] = Counter()
        self.rules: dict[tuple[str, str], Callable[[AnyCase, int, bool], Seeded | None]] = {
            ("POST", "/v1/cases"): self.registration,
            ("GET", "/v1/cases/{case_id}"): self.case,
            ("POST", "/v1/cases/{case_id}/consent-withdrawal"): self.withdrawal,
            ("GET", "/internal/v1/cases/{case_id}/identity"): self.identity,
            ("GET", "/internal/v1/caseworkers/{agency_id}/{staff_id}"): self.caseworker,
            ("GET", "/internal/v1/contact-directory"): self.contact_directory,
            ("PUT", "/v1/admin/directory/organizations/{organization_id}"): self.put_org,
            ("DELETE", "/v1/admin/directory/organizations/{organization_id}"): self.delete_org,
            ("GET", "/v1/referrals"): self.referral_list,
            ("POST", "/v1/referrals"): self.new_referral,
            ("GET", "/v1/referrals/{referral_id}"): self.referral,
            ("GET", "/v1/followups/{followup_id}"): self.followup,
            ("POST", "/v1/followups/{followup_id}/complete"): self.completion,
            ("GET", "/v1/notifications"): self.delivery_log,
            ("POST", "/v1/sms/status"): self.sms_status,
        }
        for action in TRANSITIONS:
            self.rules[("POST", f"/v1/referrals/{{referral_id}}/{action.value}")] = self.step

    def shape(self, case: AnyCase, n: int, *, proper: bool) -> Seeded | None:
        rule = self.rules.get((case.method.upper(), case.path))
        if rule is None or n % 3 == 2:
            return None
        return rule(case, n, proper)

    def follow(self, case: AnyCase, n: int, *, proper: bool) -> Seeded | None:
        """A step of a stateful scenario keeps the ids its link gave it; a referral
        this run knows is acted on with its party's key, and tracked."""
        known = self.seeds.all_referrals().get(case.path_parameters.get("referral_id", ""))
        if known is None:
            return None
        if case.path == "/v1/referrals/{referral_id}":
            return self.referral(case, n, proper, pinned=known)
        if case.path.startswith("/v1/referrals/{referral_id}/"):
            return self.step(case, n, proper, pinned=known)
        return None

    # --- intake ---------------------------------------------------------------------

    def registration(self, case: AnyCase, n: int, proper: bool) -> Seeded | None:
        if n % 3 or not isinstance(case.body, dict):
            return None
        case.body = piura_adolescent_girl()
        return Seeded("a tests/factories.py registration")

    def case(self, case: AnyCase, n: int, proper: bool) -> Seeded:
        case.path_parameters["case_id"] = _pick(self.seeds.cases, n)
        return Seeded("seeded case")

    def withdrawal(self, case: AnyCase, n: int, proper: bool) -> Seeded:
        case.path_parameters["case_id"] = _pick(self.seeds.withdrawable, n)
        if isinstance(case.body, dict) and n % 2 == 0:
            case.body.pop("withdrawn_at", None)
        return Seeded("seeded case (consent may be withdrawn)")

    def identity(self, case: AnyCase, n: int, proper: bool) -> Seeded:
        granted: SeedReferral = _pick(list(self.seeds.reserved.values()), n)
        case.path_parameters["case_id"] = granted.case_id
        case.query["on_behalf_of"] = granted.receiver
        if not isinstance(case.query.get("purpose"), str) or n % 2:
            case.query["purpose"] = IDENTITY_PURPOSE
        if n % 2:
            case.query["referral_id"] = granted.referral_id
        return Seeded("case and agency of an accepted referral")

    def caseworker(self, case: AnyCase, n: int, proper: bool) -> Seeded:
        case.path_parameters["agency_id"], case.path_parameters["staff_id"] = CASEWORKER
        return Seeded("seeded case's caseworker")

    # --- referral: directory ------------------------------------------------------------

    def contact_directory(self, case: AnyCase, n: int, proper: bool) -> Seeded | None:
        if n % 3:
            return None
        case.headers["If-None-Match"] = f'"{self.seeds.directory_version}"'
        return Seeded("If-None-Match of the seeded directory version")

    def put_org(self, case: AnyCase, n: int, proper: bool) -> Seeded:
        organization = _pick(self.seeds.organizations, n)
        case.path_parameters["organization_id"] = organization["id"]
        case.body = copy.deepcopy(organization)
        return Seeded("an organisation of the directory, unchanged")

    def delete_org(self, case: AnyCase, n: int, proper: bool) -> Seeded | None:
        # Only organisations no seeded case is routed to (outside Peru).
        abroad = [o["id"] for o in self.seeds.organizations if o.get("country") != "PE"]
        if not abroad:
            return None
        case.path_parameters["organization_id"] = _pick(abroad, n)
        return Seeded("an organisation of the directory outside Peru")

    # --- referral: referrals --------------------------------------------------------------

    def referral_list(self, case: AnyCase, n: int, proper: bool) -> Seeded:
        case.query["case_id"] = _pick(self.seeds.cases, n)
        return Seeded("seeded case")

    def new_referral(self, case: AnyCase, n: int, proper: bool) -> Seeded | None:
        free = self.seeds.free_pairs()
        if not free:
            return None
        pair = _pick(free, n)
        generated = case.body if isinstance(case.body, dict) else {}
        body: dict[str, Any] = {"case_id": pair[0], "service_id": pair[1]}
        if generated.get("urgency") in set(RiskLevel):
            body["urgency"] = generated["urgency"]
        case.body = body

        def learn(status: int, view: Any) -> None:
            if status == 409:
                self.seeds.blocked_pairs.add(pair)
            if status == 201 and isinstance(view, dict):
                seeded = SeedReferral(
                    view["referral_id"],
                    pair[0],
                    pair[1],
                    view["from_agency_id"],
                    view["to_agency_id"],
                    view["state"],
                    view["version"],
                )
                self.seeds.referrals[seeded.referral_id] = seeded

        return Seeded("seeded case and a service that takes it", learn)

    def referral(
        self, case: AnyCase, n: int, proper: bool, pinned: SeedReferral | None = None
    ) -> Seeded:
        seeded: SeedReferral = pinned or _pick(list(self.seeds.all_referrals().values()), n)
        case.path_parameters["referral_id"] = seeded.referral_id
        if proper and n % 2:
            self.fuzzer.use_key(case, seeded.receiver)
        return Seeded("seeded referral")

    def step(
        self, case: AnyCase, n: int, proper: bool, pinned: SeedReferral | None = None
    ) -> Seeded:
        action = Action(case.path.rsplit("/", 1)[1])
        party = TRANSITIONS[action].party
        pool = list(self.seeds.referrals.values())
        allowed = [r for r in pool if r.allows(action, party)]
        wanted = proper and self.steps[action] < STEPS.get(action, STEPS_PER_ACTION) and allowed
        refused = [r for r in pool if not r.allows(action, party)]
        seeded: SeedReferral = pinned or _pick(allowed if wanted or not refused else refused, n)
        case.path_parameters["referral_id"] = seeded.referral_id
        if proper:
            self.fuzzer.use_key(case, seeded.party_key(party))
        case.headers.pop("If-Match", None)
        if n % 2:
            case.headers["If-Match"] = f'"{seeded.version}"'

        def learn(status: int, view: Any) -> None:
            if 200 <= status < 300 and isinstance(view, dict):
                seeded.state, seeded.version = view["state"], view["version"]
                self.steps[action] += 1
            else:
                self.fuzzer.refresh(seeded)

        if pinned is not None:
            what = f"linked referral ({seeded.state})"
        else:
            allowing = " allowing the step" if wanted else ""
            what = f"seeded referral{allowing} ({seeded.state})"
        key = f", its {party.value} party's key" if proper else ""
        return Seeded(what + key, learn)

    # --- followup -------------------------------------------------------------------------

    def followup(self, case: AnyCase, n: int, proper: bool) -> Seeded:
        case.path_parameters["followup_id"] = _pick(self.seeds.followups, n)
        return Seeded("seeded follow-up")

    def completion(self, case: AnyCase, n: int, proper: bool) -> Seeded | None:
        open_ = [f for f in self.seeds.followups if f not in self.seeds.completed]
        if not open_:
            return None
        followup = _pick(open_, n)
        case.path_parameters["followup_id"] = followup
        if isinstance(case.body, dict) and n % 2 == 0:
            case.body.pop("completed_at", None)

        def learn(status: int, view: Any) -> None:
            if 200 <= status < 300 and isinstance(view, dict):
                self.seeds.completed.add(followup)
                if view.get("reopened_as"):
                    self.seeds.followups.append(view["reopened_as"])

        return Seeded("seeded open follow-up", learn)

    # --- notifications -------------------------------------------------------------------

    def delivery_log(self, case: AnyCase, n: int, proper: bool) -> Seeded:
        case.query["case_id"] = _pick(self.seeds.cases, n)
        return Seeded("seeded case")

    def sms_status(self, case: AnyCase, n: int, proper: bool) -> Seeded:
        """A callback signed as the provider signs it, about a message it sent."""
        sids = self.fuzzer.sms_sids() or ["SM" + secrets.token_hex(16)]
        generated = case.body if isinstance(case.body, dict) else {}
        params: dict[str, Any] = {str(k): str(v) for k, v in generated.items()}
        params.update({"MessageSid": _pick(sids, n), "MessageStatus": "delivered"})
        url = f"{self.fuzzer.urls['notifications']}/v1/sms/status"
        case.body, case.media_type = params, FORM
        case.headers["X-Twilio-Signature"] = sign_request(url, params, self.fuzzer.sms_auth_token)
        return Seeded("a provider message id, signed")
