"""The job state table (reference transitions) and what `$state/set` may ask for."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from actors.lifecycle import REQUESTABLE, TRANSITIONS, State, can_transition, refusal


def test_reference_transitions():
    assert can_transition(State.INIT, State.READY)
    assert can_transition(State.READY, State.SLEEPING)
    assert can_transition(State.SLEEPING, State.READY)
    assert can_transition(State.READY, State.DISCONNECTED)
    assert can_transition(State.SLEEPING, State.DISCONNECTED)
    assert all(can_transition(s, State.LOST) for s in (State.INIT, State.READY, State.SLEEPING))
    assert not can_transition(State.INIT, State.SLEEPING)


def test_disconnected_and_lost_are_terminal():
    assert TRANSITIONS[State.DISCONNECTED] == frozenset()
    assert TRANSITIONS[State.LOST] == frozenset()


@given(st.sampled_from(list(State)), st.text(max_size=20))
def test_refusal_allows_exactly_the_legal_requestable_transitions(current, requested):
    reason = refusal(current, requested)
    legal = requested in {s.value for s in REQUESTABLE} and (
        State(requested) == current or can_transition(current, State(requested))
    )
    assert (reason is None) == legal
    if reason is not None:
        assert reason  # always a sentence


def test_refusals_are_readable():
    assert "send one of" in refusal(State.READY, "dancing")
    assert "cannot be requested" in refusal(State.READY, "lost")
    assert "final" in refusal(State.DISCONNECTED, "ready")
