"""The disclosure-grant rules (services/intake/domain.py), event by event, no I/O."""

from __future__ import annotations

import uuid

import pytest

from contracts import events as ev
from services.intake.domain import GrantEnd, grant_after
from tests.intake.conftest import Referral


def _accepted(referral: Referral) -> ev.ReferralEventV1:
    *_, accepted = referral.accepted()
    return accepted


def test_acceptance_opens_a_grant_for_the_receiving_agency_only() -> None:
    referral = Referral(uuid.uuid4(), to_agency="cem-piura")
    sent, acknowledged, accepted = referral.accepted()
    assert grant_after(None, sent, consent_withdrawn=False) is None
    assert grant_after(None, acknowledged, consent_withdrawn=False) is None
    grant = grant_after(None, accepted, consent_withdrawn=False)
    assert grant is not None
    assert grant.live
    assert (grant.agency_id, grant.referral_id, grant.case_id, grant.version) == (
        "cem-piura",
        referral.referral_id,
        referral.case_id,
        3,
    )
    assert grant.opened_at == accepted.occurred_at


def test_a_start_keeps_the_grant_and_opens_one_when_the_acceptance_was_missed() -> None:
    referral = Referral(uuid.uuid4())
    opened = grant_after(None, _accepted(referral), consent_withdrawn=False)
    started = referral.step(ev.ReferralStartedV1)
    kept = grant_after(opened, started, consent_withdrawn=False)
    assert kept is not None
    assert kept.live
    assert opened is not None
    assert (kept.version, kept.opened_at) == (4, opened.opened_at)
    fresh = grant_after(None, started, consent_withdrawn=False)
    assert fresh is not None
    assert fresh.live


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (ev.ReferralClosedV1, GrantEnd.CLOSED),
        (ev.ReferralCancelledV1, GrantEnd.CANCELLED),
        (ev.ReferralRejectedV1, GrantEnd.REJECTED),
    ],
)
def test_close_cancel_and_reject_end_a_live_grant_for_good(
    model: type[ev.ReferralEventV1], reason: GrantEnd
) -> None:
    referral = Referral(uuid.uuid4())
    opened = grant_after(None, _accepted(referral), consent_withdrawn=False)
    ending = referral.step(model)
    ended = grant_after(opened, ending, consent_withdrawn=False)
    assert ended is not None
    assert opened is not None
    assert not ended.live
    assert (ended.end_reason, ended.ended_at, ended.opened_at) == (
        reason,
        ending.occurred_at,
        opened.opened_at,
    )
    # Nothing reopens it, not even a newer acceptance.
    assert grant_after(ended, referral.step(ev.ReferralAcceptedV1), consent_withdrawn=False) is None


def test_an_end_before_any_acceptance_is_kept_so_a_late_acceptance_cannot_open() -> None:
    referral = Referral(uuid.uuid4())
    referral.step(ev.ReferralSentV1)
    cancelled = grant_after(None, referral.step(ev.ReferralCancelledV1), consent_withdrawn=False)
    assert cancelled is not None
    assert (cancelled.opened_at, cancelled.end_reason) == (None, GrantEnd.CANCELLED)
    assert not cancelled.live


def test_an_older_or_repeated_version_changes_nothing() -> None:
    referral = Referral(uuid.uuid4())
    accepted = _accepted(referral)
    opened = grant_after(None, accepted, consent_withdrawn=False)
    assert grant_after(opened, accepted, consent_withdrawn=False) is None
    older = Referral(referral.case_id, referral_id=referral.referral_id, version=0)
    for event in older.accepted()[:2]:
        assert grant_after(opened, event, consent_withdrawn=False) is None


def test_an_acceptance_after_consent_was_withdrawn_never_opens() -> None:
    grant = grant_after(None, _accepted(Referral(uuid.uuid4())), consent_withdrawn=True)
    assert grant is not None
    assert not grant.live
    assert (grant.opened_at, grant.end_reason) == (None, GrantEnd.CONSENT_WITHDRAWN)
