"""The closed-loop lifecycle (pure)."""

from __future__ import annotations

import pytest

from contracts.codes import ReferralState as St
from services.referral.domain.lifecycle import (
    OPEN_STATES,
    TRANSITIONS,
    Action,
    Party,
    TransitionNotAllowed,
    next_state,
)


def test_closed_loop_happy_path() -> None:
    state = St.PROPOSED
    for action, expected in (
        (Action.CONFIRM, St.SENT),
        (Action.ACKNOWLEDGE, St.ACKNOWLEDGED),
        (Action.ACCEPT, St.ACCEPTED),
        (Action.START, St.IN_PROGRESS),
        (Action.CLOSE, St.CLOSED),
    ):
        state = next_state(state, action)
        assert state is expected


def test_rejection_follows_acknowledgement() -> None:
    assert next_state(St.ACKNOWLEDGED, Action.REJECT) is St.REJECTED


def test_close_is_allowed_from_accepted_and_in_progress() -> None:
    assert next_state(St.ACCEPTED, Action.CLOSE) is St.CLOSED
    assert next_state(St.IN_PROGRESS, Action.CLOSE) is St.CLOSED


@pytest.mark.parametrize("state", sorted(OPEN_STATES))
def test_sender_can_cancel_any_open_referral(state: St) -> None:
    assert next_state(state, Action.CANCEL) is St.CANCELLED


@pytest.mark.parametrize("state", [St.REJECTED, St.CLOSED, St.CANCELLED])
@pytest.mark.parametrize("action", list(Action))
def test_terminal_states_allow_nothing(state: St, action: Action) -> None:
    with pytest.raises(TransitionNotAllowed):
        next_state(state, action)


def test_impossible_transition_names_the_states_that_allow_it() -> None:
    with pytest.raises(TransitionNotAllowed) as caught:
        next_state(St.SENT, Action.CLOSE)
    assert caught.value.allowed_from == [St.ACCEPTED, St.IN_PROGRESS]
    assert "allowed from: accepted, in_progress" in str(caught.value)
    with pytest.raises(TransitionNotAllowed) as caught:
        next_state(St.SENT, Action.ACCEPT)
    assert caught.value.allowed_from == [St.ACKNOWLEDGED]


def test_who_may_do_what() -> None:
    sender = {a for a, t in TRANSITIONS.items() if t.party is Party.SENDER}
    assert sender == {Action.CONFIRM, Action.CANCEL}
    receiver = {a for a, t in TRANSITIONS.items() if t.party is Party.RECEIVER}
    assert receiver == {
        Action.ACKNOWLEDGE,
        Action.ACCEPT,
        Action.REJECT,
        Action.START,
        Action.CLOSE,
    }
