"""Pure rules: recipients, urgency, quiet hours, retries, rate, SMS maths and every
template in both languages (no I/O but reading the templates and directory files)."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts import events as ev
from contracts.codes import (
    Channel,
    ClosureOutcome,
    DeadlineKind,
    FollowupKind,
    RejectionReason,
    RiskLevel,
    ServiceType,
)
from services.notifications import store
from services.notifications.domain.messages import Links, message_context
from services.notifications.domain.recipients import (
    NOTIFIED_EVENT_TYPES,
    CaseInfo,
    ContactBook,
    Recipient,
    RecipientKind,
    Role,
    is_urgent,
    plan_recipients,
)
from services.notifications.domain.sms_text import SmsTooLong, fit_sms, sms_shape, to_gsm7
from services.notifications.domain.timing import TokenBucket, quiet_hours_end, zone
from services.notifications.rendering import Renderer
from services.notifications.sending import SendPolicy, retry_or_fail
from services.notifications.store import OutcomeKind
from tests.notifications import events
from tests.notifications.conftest import DIRECTORY, book_of

BOOK = book_of(DIRECTORY)
LINKS = Links("https://enlace.example.org/referral", "https://enlace.example.org/followup")
CASE_ID = uuid.uuid4()
CASE = CaseInfo(str(CASE_ID), "PE-PIU-2026-000123", "ong-amanecer", "cw-rosa")
NIGHT, MORNING = time(21, 0), time(7, 0)


def ids(recipients: list[Recipient]) -> list[str]:
    return [r.recipient_id for r in recipients]


def test_referral_sent_goes_to_the_receiving_service_contacts() -> None:
    plan = plan_recipients(events.referral_sent(CASE_ID, CASE.reference), None, BOOK)
    assert ids(plan.recipients) == ["ct-upe-piura-mesa"]
    (mesa,) = plan.recipients
    assert (mesa.kind, mesa.role) == (RecipientKind.DIRECTORY, Role.SERVICE_CONTACT)
    assert [c.value for c in mesa.channels] == ["sms", "email"]
    assert not plan.waiting_for_case


@pytest.mark.parametrize(
    "make", [events.referral_accepted, events.referral_rejected, events.referral_closed]
)
def test_decisions_go_to_the_referring_caseworker(make: object) -> None:
    data = make(CASE_ID, CASE.reference)  # type: ignore[operator]
    plan = plan_recipients(data, CASE, BOOK)
    assert ids(plan.recipients) == ["ong-amanecer.cw-rosa"]
    assert plan.recipients[0].kind is RecipientKind.CASEWORKER
    waiting = plan_recipients(data, None, BOOK)
    assert waiting.recipients == []
    assert waiting.waiting_for_case


def test_overdue_level_one_tells_the_people_on_the_referral() -> None:
    plan = plan_recipients(events.referral_overdue(CASE_ID, CASE.reference, 1), CASE, BOOK)
    assert ids(plan.recipients) == ["ct-upe-piura-mesa", "ong-amanecer.cw-rosa"]


def test_overdue_level_two_adds_focal_point_and_sender_supervisor() -> None:
    plan = plan_recipients(events.referral_overdue(CASE_ID, CASE.reference, 2), CASE, BOOK)
    assert ids(plan.recipients) == [
        "fp-upe-piura",
        "sup-ong-amanecer",
        "ct-upe-piura-mesa",
        "ong-amanecer.cw-rosa",
    ]
    roles = {r.recipient_id: r.role for r in plan.recipients}
    assert roles["fp-upe-piura"] is Role.FOCAL_POINT
    assert roles["sup-ong-amanecer"] is Role.SUPERVISOR
    # without the case the directory people are still told at once; the caseworker waits
    early = plan_recipients(events.referral_overdue(CASE_ID, CASE.reference, 2), None, BOOK)
    assert ids(early.recipients) == ["fp-upe-piura", "sup-ong-amanecer", "ct-upe-piura-mesa"]
    assert early.waiting_for_case


def test_followup_due_goes_to_the_caseworker_or_the_agency_focal_point() -> None:
    named = plan_recipients(events.followup_due(CASE_ID, CASE.reference), None, BOOK)
    assert ids(named.recipients) == ["ong-amanecer.cw-rosa"]
    unnamed = events.followup_due(CASE_ID, CASE.reference, caseworker_id=None)
    assert ids(plan_recipients(unnamed, CASE, BOOK).recipients) == ["ong-amanecer.cw-rosa"]
    assert ids(plan_recipients(unnamed, None, BOOK).recipients) == ["fp-ong-amanecer"]


def test_urgency() -> None:
    assert not is_urgent(events.referral_sent(urgency=RiskLevel.HIGH))
    assert is_urgent(events.referral_sent(urgency=RiskLevel.CRITICAL))
    assert not is_urgent(events.referral_overdue(CASE_ID, CASE.reference, 1))
    assert is_urgent(events.referral_overdue(CASE_ID, CASE.reference, 2))
    assert is_urgent(events.followup_due(CASE_ID, CASE.reference, risk=RiskLevel.CRITICAL))


def test_quiet_hours_defer_to_the_local_morning() -> None:
    lima = "America/Lima"  # UTC-5, no DST
    # 23:30 in Lima -> 07:00 next morning in Lima
    late = datetime(2026, 3, 11, 4, 30, tzinfo=UTC)
    assert quiet_hours_end(late, lima, NIGHT, MORNING) == datetime(2026, 3, 11, 12, 0, tzinfo=UTC)
    # 05:00 in Lima -> 07:00 the same day
    early = datetime(2026, 3, 11, 10, 0, tzinfo=UTC)
    assert quiet_hours_end(early, lima, NIGHT, MORNING) == datetime(2026, 3, 11, 12, 0, tzinfo=UTC)
    # 14:00 in Lima is not quiet
    noon = datetime(2026, 3, 11, 19, 0, tzinfo=UTC)
    assert quiet_hours_end(noon, lima, NIGHT, MORNING) is None
    # the recipient's zone decides: 19:00 UTC is 04:00 in Tokyo
    assert quiet_hours_end(noon, "Asia/Tokyo", NIGHT, MORNING) is not None
    # 21:00 sharp is quiet, 07:00 sharp is not
    assert quiet_hours_end(datetime(2026, 3, 11, 2, 0, tzinfo=UTC), lima, NIGHT, MORNING)
    assert quiet_hours_end(datetime(2026, 3, 11, 12, 0, tzinfo=UTC), lima, NIGHT, MORNING) is None


def _claimed(attempts: int) -> store.Claimed:
    return store.Claimed(
        notification_id=uuid.uuid4(),
        claim_token=uuid.uuid4(),
        source_event_id="e-1",
        event_type="referral.sent",
        source_data={},
        traceparent="",
        case_id=CASE_ID,
        recipient_id="ct-upe-piura-mesa",
        recipient_kind=RecipientKind.DIRECTORY,
        recipient_agency_id="upe-piura",
        recipient_ref="ct-upe-piura-mesa",
        role=Role.SERVICE_CONTACT,
        channel=Channel.SMS,
        urgent=False,
        attempts=attempts,
    )


def test_retries_back_off_exponentially_with_jitter_and_a_cap_then_fail() -> None:
    policy = SendPolicy(
        max_attempts=8,
        backoff_base_seconds=2,
        backoff_cap_seconds=60,
        quiet_start=NIGHT,
        quiet_end=MORNING,
        quiet_channels=frozenset(),
        default_language="es",
    )
    now = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)

    def delays(jitter: Any) -> list[float]:
        out = []
        for n in range(1, 8):
            outcome = retry_or_fail(_claimed(n), "smtp_unavailable", policy, now, jitter=jitter)
            assert (outcome.kind, outcome.error_code) == (OutcomeKind.RETRY, "smtp_unavailable")
            assert outcome.at is not None
            out.append((outcome.at - now).total_seconds())
        return out

    assert delays(lambda a, b: b) == [2, 4, 8, 16, 32, 60, 60]
    assert delays(lambda a, b: a) == [1, 2, 4, 8, 16, 30, 30]
    spread = {retry_or_fail(_claimed(3), "x", policy, now).at for _ in range(20)}
    assert len(spread) > 1
    low, high = now + timedelta(seconds=4), now + timedelta(seconds=8)
    assert all(at is not None and low <= at <= high for at in spread)
    spent = retry_or_fail(_claimed(8), "smtp_unavailable", policy, now)
    assert (spent.kind, spent.permanent, spent.at) == (OutcomeKind.FAILED, False, None)


def test_token_bucket_limits_the_rate() -> None:
    clock = [0.0]
    bucket = TokenBucket(rate=10, burst=2, now=lambda: clock[0])
    assert [bucket.reserve() for _ in range(2)] == [0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)
    clock[0] = 10.0  # refilled, but never beyond the burst
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0.0, 0.0, 0.1])


def test_gsm7_folding_and_segments() -> None:
    assert (
        to_gsm7("derivación más rápida, ¿sí? Ñandú “ok”")
        == 'derivacion mas rapida, ¿si? Ñandu "ok"'
    )
    assert sms_shape("a" * 160).segments == 1
    assert sms_shape("a" * 161).segments == 2
    assert sms_shape("a" * 306).segments == 2
    assert sms_shape("€" * 80).units == 160  # extended characters take two septets
    shape = sms_shape("你好" * 35)
    assert (shape.encoding, shape.segments) == ("UCS-2", 1)
    assert sms_shape("你" * 71).segments == 2
    assert fit_sms("x" * 306) == "x" * 306
    with pytest.raises(SmsTooLong):
        fit_sms("x" * 307)
    with pytest.raises(SmsTooLong):
        fit_sms("你" * 135)


def _worst_cases() -> list[ev.EventData]:
    """Every notified event type with the longest labels and codes the contracts allow."""
    ref, case_id = "PE-ABC-2026-999999", uuid.uuid4()
    out: list[ev.EventData] = []
    for service, urgency in itertools.product(ServiceType, RiskLevel):
        out.append(events.referral_sent(case_id, ref, service_type=service, urgency=urgency))
        out.append(events.referral_accepted(case_id, ref, service_type=service))
        out.append(events.referral_overdue(case_id, ref, 12, service_type=service))
    for reason in RejectionReason:
        out.append(
            ev.ReferralRejectedV1(
                **{
                    **events.referral_rejected(
                        case_id, ref, service_type=ServiceType.VIOLENCE_EMERGENCY_CARE
                    ).model_dump(),
                    "reason": reason,
                }
            )
        )
    for outcome in ClosureOutcome:
        out.append(
            ev.ReferralClosedV1(
                **{
                    **events.referral_closed(
                        case_id, ref, service_type=ServiceType.TRAFFICKING_VICTIM_CARE
                    ).model_dump(),
                    "outcome": outcome,
                }
            )
        )
    for deadline in DeadlineKind:
        overdue = events.referral_overdue(
            case_id, ref, 12, service_type=ServiceType.VIOLENCE_EMERGENCY_CARE
        )
        out.append(ev.ReferralOverdueV1(**{**overdue.model_dump(), "deadline": deadline}))
    for kind, risk in itertools.product(FollowupKind, RiskLevel):
        due = events.followup_due(case_id, ref, risk=risk)
        out.append(ev.FollowupDueV1(**{**due.model_dump(), "kind": kind}))
    # every event type people are told about has its worst cases here
    assert {d.event_type for d in out} == NOTIFIED_EVENT_TYPES
    return out


async def _no_book() -> ContactBook:
    raise AssertionError("not used")


@pytest.mark.parametrize("language", ["es", "en"])
def test_every_template_renders_within_two_gsm7_segments(language: str) -> None:
    renderer = Renderer()
    for data, role in itertools.product(_worst_cases(), Role):
        ctx = message_context(
            data,
            language=language,
            time_zone="America/Lima",
            recipient_name="Rosa Huamán",
            role=role,
            book=BOOK,
            links=LINKS,
        )
        sms = renderer.sms(data.event_type, language, ctx)
        shape = sms_shape(sms)
        assert shape.encoding == "GSM-7", (data.event_type, sms)
        assert shape.segments <= 2, (data.event_type, shape, sms)
        assert data.model_dump()["reference"] in sms
        if data.event_type in ("referral.sent", "referral.overdue", "followup.due"):
            assert ctx["deadline"] in sms  # the deadline, in the recipient's local time
        assert "Rosa" not in sms  # not even the recipient's name: SMS stay minimal
        email = renderer.email(data.event_type, language, ctx)
        assert data.model_dump()["reference"] in email.subject
        words = (
            ("Qué pasó", "Qué hacer", "Plazo", "Dónde")
            if language == "es"
            else ("What happened", "What to do", "By when", "Where")
        )
        for word in words:
            assert word in email.body, (data.event_type, word)
        assert ctx["link"] in email.body
        assert "{{" not in email.body
        assert "{%" not in email.body


def test_spanish_sms_for_a_new_referral_reads_well() -> None:
    data = events.referral_sent(
        CASE_ID, "PE-PIU-2026-000123", respond_by=datetime(2026, 3, 15, 19, 30, tzinfo=UTC)
    )
    ctx = message_context(
        data,
        language="es",
        time_zone="America/Lima",
        recipient_name="Mesa",
        role=Role.SERVICE_CONTACT,
        book=BOOK,
        links=LINKS,
    )
    assert Renderer().sms("referral.sent", "es", ctx) == (
        "Enlace: nueva derivacion PE-PIU-2026-000123 (proteccion especial), urgencia alta. "
        "Confirme la recepcion antes del 15/03 14:30 en Enlace."
    )
    email = Renderer().email("referral.sent", "es", ctx)
    assert email.subject == (
        "Nueva derivación PE-PIU-2026-000123: protección especial — confirmar antes del 15/03 14:30"
    )
    assert "15/03/2026 14:30 (hora de America/Lima)" in email.body
    assert "Asociación Amanecer derivó el caso PE-PIU-2026-000123" in email.body


def test_the_shared_directory_loads_and_every_contact_can_be_reached() -> None:
    book = book_of(Path(__file__).parents[2] / "deploy" / "directory.yaml")
    assert book.agencies
    for org in book.agencies.values():
        people = [c for c in (org.focal_point, org.supervisor) if c]
        people += [c for contacts in org.services.values() for c in contacts]
        for contact in people:
            assert contact.channels, contact.id
            for channel in contact.channels:
                assert contact.address(channel), (contact.id, channel)
            assert contact.language in ("es", "en"), contact.id
            assert zone(contact.time_zone).key == contact.time_zone, contact.id
