"""Who is told about which event: the contact book (a replica of the referral
service's directory, contact points only), the recipients of each event, and which
events are urgent enough to ignore quiet hours."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from contracts import events as ev
from contracts.codes import Channel, RiskLevel


@dataclass(frozen=True)
class Contact:
    """A person who can be told: a directory contact point or a caseworker."""

    id: str
    name: str
    phone: str | None
    email: str | None
    language: str
    time_zone: str
    channels: tuple[Channel, ...] = (Channel.SMS, Channel.EMAIL)

    def address(self, channel: Channel) -> str | None:
        return self.phone if channel is Channel.SMS else self.email


@dataclass(frozen=True)
class AgencyContacts:
    """One agency's contact points: its focal point, its supervisor and the contacts
    of each of its services (by service id)."""

    id: str
    name: str
    focal_point: Contact | None
    supervisor: Contact | None
    services: dict[str, tuple[Contact, ...]] = field(default_factory=dict)


class ContactBook:
    """Contact points by agency and service, as the referral service's directory
    holds them. Raises ValueError for duplicate agency or service ids, or one contact
    id used for two different people."""

    def __init__(self, agencies: Iterable[AgencyContacts]) -> None:
        self.agencies: dict[str, AgencyContacts] = {}
        self._service_agency: dict[str, str] = {}
        self._contacts: dict[str, Contact] = {}
        for agency in agencies:
            if agency.id in self.agencies:
                raise ValueError(f"contact book: duplicate agency id {agency.id!r}")
            self.agencies[agency.id] = agency
            people = [c for c in (agency.focal_point, agency.supervisor) if c is not None]
            for service_id, contacts in agency.services.items():
                if service_id in self._service_agency:
                    raise ValueError(f"contact book: duplicate service id {service_id!r}")
                self._service_agency[service_id] = agency.id
                people += contacts
            for contact in people:
                known = self._contacts.get(contact.id)
                if known is not None and known != contact:
                    raise ValueError(f"contact book: contact id {contact.id!r} used for two people")
                self._contacts[contact.id] = contact

    def __len__(self) -> int:
        """How many contacts (people or desks) the book holds."""
        return len(self._contacts)

    def contact(self, contact_id: str) -> Contact | None:
        return self._contacts.get(contact_id)

    def service_contacts(self, service_id: str) -> tuple[Contact, ...]:
        agency = self._service_agency.get(service_id)
        return self.agencies[agency].services[service_id] if agency else ()

    def focal_point(self, agency_id: str) -> Contact | None:
        agency = self.agencies.get(agency_id)
        return agency.focal_point if agency else None

    def supervisor(self, agency_id: str) -> Contact | None:
        agency = self.agencies.get(agency_id)
        return agency.supervisor if agency else None

    def agency_name(self, agency_id: str) -> str:
        agency = self.agencies.get(agency_id)
        return agency.name if agency else agency_id


class RecipientKind(StrEnum):
    DIRECTORY = "directory"  # contact resolved from the contact book
    CASEWORKER = "caseworker"  # contact resolved from intake's internal endpoint


class Role(StrEnum):
    SERVICE_CONTACT = "service_contact"
    REFERRING_CASEWORKER = "referring_caseworker"
    CASEWORKER = "caseworker"
    FOCAL_POINT = "focal_point"
    SUPERVISOR = "supervisor"


@dataclass(frozen=True)
class Recipient:
    kind: RecipientKind
    agency_id: str
    ref: str  # directory contact id, or staff id within agency_id
    role: Role
    channels: tuple[Channel, ...]

    @property
    def recipient_id(self) -> str:
        """Stable id in events and in the delivery key (contract pattern, <= 64 chars)."""
        if self.kind is RecipientKind.DIRECTORY:
            return self.ref
        key = f"{self.agency_id}.{self.ref}"
        if len(key) <= 64:
            return key
        return f"{key[:47]}.{hashlib.sha256(key.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class CaseInfo:
    """What notifications keeps of a case: whose it is and who works it."""

    case_id: str
    reference: str
    agency_id: str
    caseworker_id: str


@dataclass(frozen=True)
class Plan:
    recipients: list[Recipient]
    waiting_for_case: bool  # a caseworker must be told, but case.created is not seen yet


def _directory_recipient(contact: Contact, agency_id: str, role: Role) -> Recipient:
    return Recipient(RecipientKind.DIRECTORY, agency_id, contact.id, role, contact.channels)


def _caseworker(agency_id: str, staff_id: str, role: Role) -> Recipient:
    return Recipient(
        RecipientKind.CASEWORKER, agency_id, staff_id, role, (Channel.SMS, Channel.EMAIL)
    )


# The events people are told about (each has its templates); the other coordination
# events reach only partner systems (`partners`).
NOTIFIED_EVENT_TYPES = frozenset(
    {
        ev.ReferralSentV1.event_type,
        ev.ReferralAcceptedV1.event_type,
        ev.ReferralRejectedV1.event_type,
        ev.ReferralClosedV1.event_type,
        ev.ReferralOverdueV1.event_type,
        ev.FollowupDueV1.event_type,
    }
)


def plan_recipients(data: ev.EventData, case: CaseInfo | None, book: ContactBook) -> Plan:
    """Who must be told about this event (issue 5, 'Who and what')."""
    found: list[Recipient] = []
    waiting = False

    def service_contacts(ref: ev.ReferralEventV1) -> None:
        for contact in book.service_contacts(ref.service_id):
            found.append(_directory_recipient(contact, ref.to_agency_id, Role.SERVICE_CONTACT))

    def referring_caseworker() -> None:
        nonlocal waiting
        if case is None:
            waiting = True
        else:
            found.append(_caseworker(case.agency_id, case.caseworker_id, Role.REFERRING_CASEWORKER))

    if isinstance(data, ev.ReferralSentV1):
        service_contacts(data)
    elif isinstance(data, ev.ReferralAcceptedV1 | ev.ReferralRejectedV1 | ev.ReferralClosedV1):
        referring_caseworker()
    elif isinstance(data, ev.ReferralOverdueV1):
        if data.escalation_level >= 2:
            focal = book.focal_point(data.to_agency_id)
            if focal is not None:
                found.append(_directory_recipient(focal, data.to_agency_id, Role.FOCAL_POINT))
            supervisor = book.supervisor(data.from_agency_id)
            if supervisor is not None:
                found.append(_directory_recipient(supervisor, data.from_agency_id, Role.SUPERVISOR))
        service_contacts(data)
        referring_caseworker()
    elif isinstance(data, ev.FollowupDueV1):
        if data.caseworker_id is not None:
            found.append(_caseworker(data.agency_id, data.caseworker_id, Role.CASEWORKER))
        elif case is not None and case.agency_id == data.agency_id:
            found.append(_caseworker(case.agency_id, case.caseworker_id, Role.CASEWORKER))
        else:
            focal = book.focal_point(data.agency_id)
            if focal is not None:
                found.append(_directory_recipient(focal, data.agency_id, Role.FOCAL_POINT))
    unique: dict[str, Recipient] = {}
    for recipient in found:
        unique.setdefault(recipient.recipient_id, recipient)
    return Plan(list(unique.values()), waiting)


def owner_of(data: ev.EventData, case: CaseInfo | None) -> str:
    """The agency whose delivery log shows these notifications: the case's registering
    agency, else (case not seen yet) the referring agency or the follow-up's agency."""
    if case is not None:
        return case.agency_id
    if isinstance(data, ev.ReferralEventV1):
        return data.from_agency_id
    if isinstance(data, ev.FollowupDueV1):
        return data.agency_id
    raise ValueError(f"no owner for {data.event_type}")


def is_urgent(data: ev.EventData) -> bool:
    """Critical cases and escalations from level 2 ignore quiet hours."""
    if isinstance(data, ev.ReferralOverdueV1) and data.escalation_level >= 2:
        return True
    if isinstance(data, ev.ReferralEventV1):
        return data.urgency is RiskLevel.CRITICAL
    if isinstance(data, ev.FollowupDueV1):
        return data.risk_level is RiskLevel.CRITICAL
    return False
