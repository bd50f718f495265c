"""What a registered case must produce, derived with the product's own code: intake's
`case.created` (risk, age band), referral's routing rules and directory, and the
directory's contact points notifications writes to. Nothing is hard-coded here: a
change of deploy/routing.yaml or deploy/directory.yaml changes the expectation.

The registrations are the OpenAPI examples of intake (services/intake/examples.py)
with fresh ids; the Piura child's name and birth date vary from case to case (the age
stays 15) so the cases do not all flag each other as possible duplicates.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from contracts.events import CaseCreatedV1
from services.intake import domain as intake_domain
from services.intake import examples
from services.referral.app import ReferralSettings, agency_ids
from services.referral.domain.case import CaseProfile
from services.referral.domain.directory import load_directory
from services.referral.domain.routing import load_rules, plan_routing

# The agencies file services.sh gives the services (the local profile's).
AGENCIES_FILE = Path(__file__).resolve().parents[1] / "deploy" / "local" / "agencies.yaml"
# Fictional given names for the Piura example (the family names stay the example's).
_GIVEN = ("Daniela Valentina", "Camila Sofía", "Lucía Fernanda", "María José", "Ana Gabriela")


@dataclass(frozen=True)
class Message:
    """One message a case must cause: on `channel` to `address` (a phone or an e-mail
    address), about `event_type`, for directory contact `recipient_id`."""

    channel: str
    address: str
    recipient_id: str
    event_type: str


@dataclass(frozen=True)
class Template:
    name: str
    agency_id: str  # who registers it (its demo key)
    referrals: tuple[tuple[str, str], ...]  # (service_id, first event type)
    unmet: tuple[str, ...]  # service types nobody covers
    messages: tuple[Message, ...]

    def body(self, index: int) -> dict[str, Any]:
        """A fresh registration of this template (new external id, dates that hold)."""
        return _BUILDERS[self.name](index)


def _piura(index: int) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(examples.PIURA_REGISTRATION)
    body["external_id"] = f"AMN-{uuid.uuid4().hex[:12]}"
    body["child"]["given_names"] = _GIVEN[index % len(_GIVEN)]
    today = date.today()
    # 15 years and 30 to 330 days old: the same age band, another birth date.
    birth = today.replace(year=today.year - 15) - timedelta(days=30 + index % 300)
    body["child"]["birth_date"] = birth.isoformat()
    body["guardian"] = None
    body["consent"]["recorded_at"] = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    return body


def _guatemala(index: int) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(examples.GUATEMALA_TRAFFICKING_REGISTRATION)
    body["external_id"] = f"CS-{uuid.uuid4().hex[:12]}"
    two_hours_ago = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    body["consent"]["recorded_at"] = two_hours_ago
    body["consent"]["best_interest"]["decided_at"] = two_hours_ago
    return body


_BUILDERS = {"piura": _piura, "guatemala": _guatemala}
_AGENCIES = {"piura": "ong-amanecer", "guatemala": "comunidad-segura-gt"}


def case_created(name: str, case_id: uuid.UUID) -> CaseCreatedV1:
    """The case.created intake publishes for a registration of this template."""
    now = datetime.now(UTC)
    reg = intake_domain.CaseRegistration.model_validate(_BUILDERS[name](0))
    age = intake_domain.check_dates(reg, now)
    risk = intake_domain.assess_risk(
        reg.concerns,
        age=age,
        unaccompanied=reg.unaccompanied,
        separated=reg.separated,
        has_disability=reg.child.has_disability,
    )
    return intake_domain.case_created(
        case_id=case_id,
        reference=intake_domain.reference_code(reg.location.region, now.year, 999999),
        agency_id=_AGENCIES[name],
        registered_at=now,
        reg=reg,
        age=age,
        risk=risk,
        possible_duplicate_of=[],
    )


def derive(name: str) -> Template:
    """The template's expectation, computed as intake and referral compute it."""
    fields = ReferralSettings.model_fields
    routing: Path = fields["routing_file"].default
    directory_file: Path = fields["directory_file"].default
    rules = load_rules(routing.read_text(), source=routing.name)
    directory = load_directory(
        directory_file.read_text(),
        known_agencies=agency_ids(AGENCIES_FILE),
        source=directory_file.name,
    )
    event = case_created(name, uuid.uuid4())
    plan = plan_routing(CaseProfile.from_event(event), rules, directory.offers())
    referrals = tuple(
        (p.offer.service.id, "referral.sent" if p.send_now else "referral.proposed")
        for p in plan.referrals
    )
    messages: list[Message] = []
    for planned in plan.referrals:
        if not planned.send_now:
            continue  # a proposal tells nobody until the owning agency confirms it
        for contact in planned.offer.service.contacts:
            for channel in contact.channels:
                address = contact.phone if channel.value == "sms" else contact.email
                assert address is not None  # the directory refuses a channel without one
                messages.append(Message(channel.value, address, contact.id, "referral.sent"))
    return Template(
        name=name,
        agency_id=_AGENCIES[name],
        referrals=referrals,
        unmet=tuple(u.service_type.value for u in plan.unmet),
        messages=tuple(messages),
    )


def templates() -> dict[str, Template]:
    return {name: derive(name) for name in _BUILDERS}
