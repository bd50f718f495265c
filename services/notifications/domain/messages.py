"""What a message may say, in the recipient's language (es or en): labels for the
contract codes, dates in the recipient's local time, the link to act on. Only codes,
the reference and deadlines: events carry no child's details, and nothing else is
added here. The words themselves are the templates (`services.notifications.rendering`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts import events as ev
from contracts.codes import RiskLevel
from services.notifications.domain.recipients import ContactBook, Role
from services.notifications.domain.timing import zone

SUPPORTED_LANGUAGES = ("es", "en")

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
    book: ContactBook,
    links: Links,
) -> dict[str, Any]:
    """Everything a template may say (see the module docstring)."""
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
            to_agency=book.agency_name(data.to_agency_id),
            from_agency=book.agency_name(data.from_agency_id),
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


def notice_context(
    notice: dict[str, Any], *, language: str, time_zone: str, recipient_name: str
) -> dict[str, Any]:
    """What the notice about a disabled webhook endpoint may say: the endpoint, its
    URL (the agency's own system), why and since when (no case, no child)."""
    reasons = {
        "es": {"gone": "respondió 410 (ya no existe)", "failing": "falla desde hace días"},
        "en": {"gone": "answered 410 (gone)", "failing": "has been failing for days"},
    }[language]
    since = notice.get("failing_since")
    return {
        "recipient_name": recipient_name,
        "endpoint_id": notice["endpoint_id"],
        "url": notice["url"],
        "reason": reasons.get(str(notice["reason"]), str(notice["reason"])),
        "since": full_moment(datetime.fromisoformat(since), language, time_zone) if since else "",
        "disabled_at": full_moment(
            datetime.fromisoformat(str(notice["disabled_at"])), language, time_zone
        ),
    }
