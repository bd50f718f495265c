"""Notification rules, without I/O: who is told about which event, by which
channel, in which words, when (quiet hours), how often retried (backoff), and how
fast (token bucket). SMS bodies are folded to the GSM-7 alphabet where possible and
must fit in two segments.
"""

from __future__ import annotations

import hashlib
import math
import random
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

from contracts import events as ev
from contracts.codes import Channel, RiskLevel

SUPPORTED_LANGUAGES = ("es", "en")
TEMPLATES_DIR = Path(__file__).parent / "templates"

NOTIFIED_EVENT_TYPES = (
    "referral.sent",
    "referral.accepted",
    "referral.rejected",
    "referral.closed",
    "referral.overdue",
    "followup.due",
)


# --- contacts and recipients ----------------------------------------------------------


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
class Organization:
    id: str
    name: str
    focal_point: Contact | None
    supervisor: Contact | None
    services: dict[str, tuple[Contact, ...]] = field(default_factory=dict)


class Directory:
    """Contact points by agency and service (seeded from deploy/directory.yaml)."""

    def __init__(self, organizations: Iterable[Organization]) -> None:
        self.organizations: dict[str, Organization] = {}
        self._service_agency: dict[str, str] = {}
        self._contacts: dict[str, Contact] = {}
        for org in organizations:
            if org.id in self.organizations:
                raise ValueError(f"directory: duplicate organization id {org.id!r}")
            self.organizations[org.id] = org
            people = [c for c in (org.focal_point, org.supervisor) if c is not None]
            for service_id, contacts in org.services.items():
                if service_id in self._service_agency:
                    raise ValueError(f"directory: duplicate service id {service_id!r}")
                self._service_agency[service_id] = org.id
                people += contacts
            for contact in people:
                known = self._contacts.get(contact.id)
                if known is not None and known != contact:
                    raise ValueError(f"directory: contact id {contact.id!r} used for two people")
                self._contacts[contact.id] = contact

    def contact(self, contact_id: str) -> Contact | None:
        return self._contacts.get(contact_id)

    def service_contacts(self, service_id: str) -> tuple[Contact, ...]:
        agency = self._service_agency.get(service_id)
        return self.organizations[agency].services[service_id] if agency else ()

    def focal_point(self, agency_id: str) -> Contact | None:
        org = self.organizations.get(agency_id)
        return org.focal_point if org else None

    def supervisor(self, agency_id: str) -> Contact | None:
        org = self.organizations.get(agency_id)
        return org.supervisor if org else None

    def agency_name(self, agency_id: str) -> str:
        org = self.organizations.get(agency_id)
        return org.name if org else agency_id


class RecipientKind(StrEnum):
    DIRECTORY = "directory"  # contact resolved from the directory
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


def plan_recipients(data: ev.EventData, case: CaseInfo | None, directory: Directory) -> Plan:
    """Who must be told about this event (issue 5, 'Who and what')."""
    found: list[Recipient] = []
    waiting = False

    def service_contacts(ref: ev.ReferralEventV1) -> None:
        for contact in directory.service_contacts(ref.service_id):
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
            focal = directory.focal_point(data.to_agency_id)
            if focal is not None:
                found.append(_directory_recipient(focal, data.to_agency_id, Role.FOCAL_POINT))
            supervisor = directory.supervisor(data.from_agency_id)
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
            focal = directory.focal_point(data.agency_id)
            if focal is not None:
                found.append(_directory_recipient(focal, data.agency_id, Role.FOCAL_POINT))
    unique: dict[str, Recipient] = {}
    for recipient in found:
        unique.setdefault(recipient.recipient_id, recipient)
    return Plan(list(unique.values()), waiting)


def is_urgent(data: ev.EventData) -> bool:
    """Critical cases and escalations from level 2 ignore quiet hours."""
    if isinstance(data, ev.ReferralOverdueV1) and data.escalation_level >= 2:
        return True
    if isinstance(data, ev.ReferralEventV1):
        return data.urgency is RiskLevel.CRITICAL
    if isinstance(data, ev.FollowupDueV1):
        return data.risk_level is RiskLevel.CRITICAL
    return False


# --- time: quiet hours, backoff, rate ----------------------------------------------------


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def quiet_hours_end(now: datetime, time_zone: str, start: time, end: time) -> datetime | None:
    """When `now` falls in the recipient's quiet hours, the local morning they end
    (as an aware datetime); else None. Handles windows that wrap past midnight."""
    tz = zone(time_zone)
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    morning: datetime | None = None
    if start > end:  # e.g. 21:00-07:00
        if t >= start:
            morning = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=tz)
        elif t < end:
            morning = datetime.combine(local.date(), end, tzinfo=tz)
    elif start <= t < end:
        morning = datetime.combine(local.date(), end, tzinfo=tz)
    return morning.astimezone(UTC) if morning else None


def retry_delay(
    attempt: int, *, base: float, cap: float, rng: Callable[[float, float], float] = random.uniform
) -> float:
    """Exponential backoff with equal jitter after failed attempt number `attempt` (1-based):
    between half and all of min(cap, base * 2^(attempt-1)) seconds."""
    ceiling = min(cap, base * (2.0 ** max(0, attempt - 1)))
    return ceiling / 2 + rng(0.0, ceiling / 2)


class TokenBucket:
    """`rate` sends per second, bursts up to `burst`. `reserve()` takes a token and says
    how long the caller must wait before using it (callers queue fairly)."""

    def __init__(self, rate: float, burst: float, now: Callable[[], float]) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._now = now
        self._tokens = burst
        self._updated = now()

    def reserve(self) -> float:
        current = self._now()
        self._tokens = min(self.burst, self._tokens + (current - self._updated) * self.rate)
        self._updated = current
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else float(-self._tokens / self.rate)


# --- SMS character set and segments -------------------------------------------------------

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")
_FOLD = {
    "“": '"',
    "”": '"',
    "„": '"',
    "‘": "'",
    "’": "'",
    "–": "-",
    "—": "-",
    "…": "...",
    "º": "o",
    "ª": "a",
    "ç": "c",
    "\u00a0": " ",
    "·": ".",
}

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67
MAX_SMS_SEGMENTS = 2


class SmsTooLong(ValueError):
    pass


def to_gsm7(text: str) -> str:
    """Fold characters outside GSM-7 (á, í, ó, ú, curly quotes...) to their closest
    GSM-7 form; characters with no such form are kept (the message becomes UCS-2)."""
    out: list[str] = []
    for char in text:
        if char in GSM7_BASIC or char in GSM7_EXTENDED:
            out.append(char)
        elif char in _FOLD:
            out.append(_FOLD[char])
        else:
            base = "".join(
                c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
            )
            out.append(base if base and all(c in GSM7_BASIC for c in base) else char)
    return "".join(out)


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text)


@dataclass(frozen=True)
class SmsShape:
    encoding: str  # "GSM-7" | "UCS-2"
    units: int  # septets (extended characters count 2) or UTF-16 code units
    segments: int


def sms_shape(text: str) -> SmsShape:
    if is_gsm7(text):
        units = sum(2 if c in GSM7_EXTENDED else 1 for c in text)
        single, part, encoding = GSM7_SINGLE, GSM7_PART, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part, encoding = UCS2_SINGLE, UCS2_PART, "UCS-2"
    segments = 1 if units <= single else math.ceil(units / part)
    return SmsShape(encoding, units, segments)


def fit_sms(text: str, max_segments: int = MAX_SMS_SEGMENTS) -> str:
    """The SMS body as sent: whitespace collapsed, folded to GSM-7; refuses > max segments."""
    body = to_gsm7(" ".join(text.split()))
    shape = sms_shape(body)
    if shape.segments > max_segments:
        raise SmsTooLong(f"{shape.segments} {shape.encoding} segments ({shape.units} units)")
    return body


# --- messages -------------------------------------------------------------------------------

LABELS: dict[str, dict[str, dict[str, str]]] = {
    "es": {
        "service_type": {
            "special_protection": "protección especial",
            "violence_emergency_care": "atención de emergencia por violencia",
            "psychosocial_support": "apoyo psicosocial",
            "legal_aid_migration": "asesoría legal migratoria",
            "legal_assistance": "asistencia legal",
            "consular_assistance": "asistencia consular",
            "empowerment_programme": "programa de empoderamiento",
            "shelter": "albergue",
            "trafficking_victim_care": "atención a víctimas de trata",
            "family_tracing": "búsqueda familiar",
            "safe_return": "retorno seguro",
            "case_management": "gestión de caso",
            "health_care": "atención de salud",
            "education": "educación",
        },
        "urgency": {"low": "baja", "medium": "media", "high": "alta", "critical": "CRÍTICA"},
        "reason": {
            "not_eligible": "no elegible",
            "no_capacity": "sin cupo",
            "outside_coverage": "fuera de cobertura",
            "service_not_offered": "servicio no ofrecido",
            "duplicate_referral": "derivación duplicada",
            "insufficient_information": "información insuficiente",
            "other": "otro motivo",
        },
        "outcome": {
            "service_provided": "servicio brindado",
            "partially_provided": "servicio brindado en parte",
            "declined_by_family": "rechazado por la familia",
            "child_unreachable": "no se pudo contactar",
            "not_eligible": "no elegible",
            "transferred": "transferido",
        },
        "deadline": {
            "acknowledge": "confirmar recepción",
            "decide": "aceptar o rechazar",
            "start_service": "iniciar el servicio",
            "close": "cerrar la derivación",
        },
        "followup_kind": {
            "post_closure_check": "verificación posterior al cierre",
            "periodic_review": "revisión periódica",
        },
    },
    "en": {
        "service_type": {
            "special_protection": "special protection",
            "violence_emergency_care": "violence emergency care",
            "psychosocial_support": "psychosocial support",
            "legal_aid_migration": "migration legal aid",
            "legal_assistance": "legal assistance",
            "consular_assistance": "consular assistance",
            "empowerment_programme": "empowerment programme",
            "shelter": "shelter",
            "trafficking_victim_care": "trafficking victim care",
            "family_tracing": "family tracing",
            "safe_return": "safe return",
            "case_management": "case management",
            "health_care": "health care",
            "education": "education",
        },
        "urgency": {"low": "low", "medium": "medium", "high": "high", "critical": "CRITICAL"},
        "reason": {
            "not_eligible": "not eligible",
            "no_capacity": "no capacity",
            "outside_coverage": "outside coverage",
            "service_not_offered": "service not offered",
            "duplicate_referral": "duplicate referral",
            "insufficient_information": "insufficient information",
            "other": "other reason",
        },
        "outcome": {
            "service_provided": "service provided",
            "partially_provided": "partially provided",
            "declined_by_family": "declined by the family",
            "child_unreachable": "child unreachable",
            "not_eligible": "not eligible",
            "transferred": "transferred",
        },
        "deadline": {
            "acknowledge": "acknowledge receipt",
            "decide": "accept or reject",
            "start_service": "start the service",
            "close": "close the referral",
        },
        "followup_kind": {
            "post_closure_check": "post-closure check",
            "periodic_review": "periodic review",
        },
    },
}

_EN_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def language_for(preferred: str | None, default: str = "es") -> str:
    return preferred if preferred in SUPPORTED_LANGUAGES else default


def short_moment(moment: datetime, language: str, time_zone: str) -> str:
    """'15/03 14:30' (es) or '15 Mar 14:30' (en), in the recipient's local time."""
    local = moment.astimezone(zone(time_zone))
    if language == "en":
        return f"{local.day} {_EN_MONTHS[local.month - 1]} {local:%H:%M}"
    return f"{local:%d/%m %H:%M}"


def full_moment(moment: datetime, language: str, time_zone: str) -> str:
    local = moment.astimezone(zone(time_zone))
    if language == "en":
        return (
            f"{local.day} {_EN_MONTHS[local.month - 1]} {local.year}, {local:%H:%M} ({time_zone})"
        )
    return f"{local:%d/%m/%Y %H:%M} (hora de {time_zone})"


@dataclass(frozen=True)
class Links:
    referral_api_url: str
    followup_api_url: str


def message_context(
    data: ev.EventData,
    *,
    language: str,
    time_zone: str,
    recipient_name: str,
    role: Role,
    directory: Directory,
    links: Links,
) -> dict[str, Any]:
    """Everything a template may say. Only codes, the reference and deadlines: events
    carry no child's details, and nothing else is added here."""
    labels = LABELS[language]
    raw = data.model_dump(mode="json")
    ctx: dict[str, Any] = {
        "event_type": data.event_type,
        "reference": raw["reference"],
        "recipient_name": recipient_name,
        "role": role.value,
    }

    def moment(name: str, value: datetime) -> None:
        ctx[name] = short_moment(value, language, time_zone)
        ctx[f"{name}_full"] = full_moment(value, language, time_zone)

    if isinstance(data, ev.ReferralEventV1):
        ctx.update(
            service=labels["service_type"].get(data.service_type.value, data.service_type.value),
            urgency=labels["urgency"][data.urgency.value],
            critical=data.urgency is RiskLevel.CRITICAL,
            to_agency=directory.agency_name(data.to_agency_id),
            from_agency=directory.agency_name(data.from_agency_id),
            cross_border=data.cross_border,
            link=f"{links.referral_api_url.rstrip('/')}/v1/referrals/{data.referral_id}",
        )
    if isinstance(data, ev.ReferralSentV1):
        moment("deadline", data.respond_by)
    elif isinstance(data, ev.ReferralRejectedV1):
        ctx["reason"] = labels["reason"][data.reason.value]
    elif isinstance(data, ev.ReferralClosedV1):
        ctx["outcome"] = labels["outcome"][data.outcome.value]
    elif isinstance(data, ev.ReferralOverdueV1):
        moment("deadline", data.due_at)
        ctx.update(
            level=data.escalation_level, deadline_kind=labels["deadline"][data.deadline.value]
        )
    elif isinstance(data, ev.FollowupDueV1):
        moment("deadline", data.due_at)
        ctx.update(
            kind=labels["followup_kind"][data.kind.value],
            critical=data.risk_level is RiskLevel.CRITICAL,
            link=f"{links.followup_api_url.rstrip('/')}/v1/followups/{data.followup_id}",
        )
    return ctx


@dataclass(frozen=True)
class Email:
    subject: str
    body: str


class Renderer:
    """Jinja2 templates `<event>.<lang>.sms.j2` and `<event>.<lang>.email.j2` (blocks
    `subject` and `body`)."""

    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )

    def sms(self, event_type: str, language: str, ctx: dict[str, Any]) -> str:
        text = self._env.get_template(f"{event_type}.{language}.sms.j2").render(ctx)
        return fit_sms(text)

    def email(self, event_type: str, language: str, ctx: dict[str, Any]) -> Email:
        template = self._env.get_template(f"{event_type}.{language}.email.j2")
        context = template.new_context(ctx)
        subject = " ".join("".join(template.blocks["subject"](context)).split())
        body = "".join(template.blocks["body"](template.new_context(ctx))).strip() + "\n"
        return Email(subject, body)
