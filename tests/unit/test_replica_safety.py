"""The signing guard: Persist before every signature, never two different signatures at
one (height, round, step), and a restart from the durable state keeps the lock and never
signs again where it signed before (SPEC "signing guard")."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from consensus.messages import (
    NIL_ROUND,
    Action,
    BuildValue,
    Decide,
    DurableState,
    Event,
    Height,
    HeightStarted,
    Persist,
    Proposal,
    Round,
    Step,
    TimeoutFired,
    Timer,
    ValidatorId,
    ValueBuilt,
    ValueChecked,
    Vote,
    VoteType,
)
from consensus.replica import Replica
from tests.unit.test_replica_harness import (
    IDS,
    VALIDATORS,
    H,
    broadcasts,
    feed,
    of_type,
    precommit,
    prevote,
    proposal,
    received,
    replica_for,
    value,
    votes_out,
)

V0, V1, V2, V3 = IDS
X = value(b"block x")
Y = value(b"block y")
RESTART = "restart"


def position(message: Proposal | Vote) -> tuple[int, int, Step]:
    step = Step.PROPOSE if isinstance(message, Proposal) else message.vote_type.step
    return (message.height, message.round, step)


def guard(state: DurableState) -> tuple[int, int, int]:
    step = -1 if state.signed_step is None else int(state.signed_step)
    return (state.signed_height, state.signed_round, step)


def lock_x_in_round_0(replica: Replica) -> list[Action]:
    out = feed(
        replica, [HeightStarted(height=H, validators=VALIDATORS), received(proposal(1, 0, X))]
    )
    out += feed(replica, [ValueChecked(height=H, value_id=X.value_id, valid=True)])
    out += feed(replica, [received(prevote(v, 1, 0, X)) for v in (V2, V3)])
    assert replica.locked_value == X
    return out


def last_persisted(actions: list[Action]) -> DurableState:
    return of_type(actions, Persist)[-1].state


def test_restart_after_locking_keeps_the_lock_and_does_not_sign_round_0_again() -> None:
    before = replica_for(V0)
    out = lock_x_in_round_0(before)
    durable = last_persisted(out)
    assert (durable.locked_value, durable.locked_round) == (X, 0)
    assert guard(durable) == (1, 0, Step.PRECOMMIT)

    after = replica_for(V0, durable=durable)
    out = after.step(HeightStarted(height=H, validators=VALIDATORS), 0)
    assert (after.round, after.locked_value, after.locked_round) == (0, X, 0)
    # The same round again, even with a different proposal-independent path: silence.
    out += feed(after, [received(proposal(1, 0, X))])
    out += feed(after, [received(prevote(v, 1, 0, None)) for v in (V1, V2, V3)])
    out += feed(after, [TimeoutFired(height=H, round=Round(0), timer=Timer.PROPOSE)])
    assert broadcasts(out) == []
    # Round 1: a fresh proposal of another value gets a nil prevote (the lock held).
    out = feed(after, [received(precommit(v, 1, 1, None)) for v in (V1, V2)])
    out += feed(after, [received(proposal(1, 1, Y))])
    assert [v.value_id for v in votes_out(out, VoteType.PREVOTE)] == [None]


def test_restart_after_prevoting_may_still_precommit_in_that_round() -> None:
    before = replica_for(V0)
    out = feed(
        before, [HeightStarted(height=H, validators=VALIDATORS), received(proposal(1, 0, X))]
    )
    out += feed(before, [ValueChecked(height=H, value_id=X.value_id, valid=True)])
    durable = last_persisted(out)
    assert guard(durable) == (1, 0, Step.PREVOTE)

    after = replica_for(V0, durable=durable)
    out = feed(after, [HeightStarted(height=H, validators=VALIDATORS), received(proposal(1, 0, X))])
    out += feed(after, [ValueChecked(height=H, value_id=X.value_id, valid=True)])
    assert votes_out(out, VoteType.PREVOTE) == []  # already prevoted before the crash
    out = feed(after, [received(prevote(v, 1, 0, X)) for v in (V1, V2, V3)])
    assert [v.value_id for v in votes_out(out, VoteType.PRECOMMIT)] == [X.value_id]


def test_restarted_proposer_does_not_propose_twice_in_a_round() -> None:
    before = replica_for(V1)  # proposer of round 0
    out = before.step(HeightStarted(height=H, validators=VALIDATORS), 0)
    out += before.step(ValueBuilt(height=H, round=Round(0), value=X), 0)
    durable = last_persisted(out)
    after = replica_for(V1, durable=durable)
    out = after.step(HeightStarted(height=H, validators=VALIDATORS), 0)
    assert of_type(out, BuildValue) == []
    assert broadcasts(out) == []
    assert after.step(ValueBuilt(height=H, round=Round(0), value=Y), 0) == []


def test_durable_state_of_an_older_height_is_not_restored() -> None:
    old = DurableState(
        signed_height=Height(0),
        signed_round=Round(4),
        signed_step=Step.PRECOMMIT,
        locked_value=X,
        locked_round=Round(4),
        valid_value=X,
        valid_round=Round(4),
    )
    replica = replica_for(V0, durable=old)
    replica.step(HeightStarted(height=H, validators=VALIDATORS), 0)
    assert (replica.round, replica.locked_value, replica.valid_round) == (0, None, NIL_ROUND)
    out = replica.step(received(proposal(1, 0, Y)), 0)
    out += replica.step(ValueChecked(height=H, value_id=Y.value_id, valid=True), 0)
    assert [v.value_id for v in votes_out(out, VoteType.PREVOTE)] == [Y.value_id]


# ---------------------------------------------------------------------------------------
# Property: over random event sequences with restarts, every new signature is preceded in
# its action list by a Persist covering it, and no position is ever signed twice.


def _event_pools() -> tuple[list[Event | str], list[Event | str]]:
    """Votes of three peers, and the events that drive the steps: proposals, validity
    answers, timers, built values and restarts. Rounds 0-1 keep collisions likely."""
    votes: list[Event | str] = []
    drivers: list[Event | str] = [RESTART] * 4
    values = (X, Y)
    for r in range(2):
        for v in values:
            drivers += [received(proposal(1, r, v, vr)) for vr in range(NIL_ROUND, r)]
            drivers.append(ValueBuilt(height=H, round=Round(r), value=v))
        for voter in (V1, V2, V3):
            for choice in (X, Y, None):
                votes.append(received(prevote(voter, 1, r, choice)))
                votes.append(received(precommit(voter, 1, r, choice)))
        drivers += [TimeoutFired(height=H, round=Round(r), timer=timer) for timer in Timer]
    for v in values:
        drivers += [ValueChecked(height=H, value_id=v.value_id, valid=ok) for ok in (True, False)]
    return votes, drivers


VOTES, DRIVERS = _event_pools()
EVENTS = st.one_of(st.sampled_from(VOTES), st.sampled_from(DRIVERS))


def _check_list(
    actions: list[Action], signed: dict[tuple[int, int, Step], object], subject: ValidatorId
) -> None:
    covered: tuple[int, int, int] | None = None
    for action in actions:
        if isinstance(action, Persist):
            covered = guard(action.state)
        for message in broadcasts([action]):
            signer = message.proposer if isinstance(message, Proposal) else message.voter
            if signer != subject:
                continue  # another validator's message, forwarded (the proof of lock)
            where = position(message)
            if where in signed:
                assert signed[where] == message  # a re-send, never a second signature
                continue
            assert covered is not None  # a new signature left without a Persist first
            assert covered >= (where[0], where[1], int(where[2]))
            signed[where] = message


@settings(max_examples=300, deadline=None)
@example(  # found by hypothesis: a forwarded prevote of v1 was taken for v2's own signature
    subject=V2,
    events=[
        received(prevote(V1, 1, 1, X)),
        received(prevote(V3, 1, 1, X)),
        ValueBuilt(height=H, round=Round(1), value=X),
        TimeoutFired(height=H, round=Round(1), timer=Timer.REBROADCAST),
    ],
)
@given(
    subject=st.sampled_from([V0, V1, V2]),
    events=st.lists(EVENTS, max_size=80),
)
def test_persist_precedes_every_new_signature_and_nothing_is_signed_twice(
    subject: ValidatorId, events: list[Event | str]
) -> None:
    durable = DurableState.initial(H)
    replica = replica_for(subject, durable=durable)
    replica.step(HeightStarted(height=H, validators=VALIDATORS), 0)
    signed: dict[tuple[int, int, Step], object] = {}
    now_ms = 0
    for event in events:
        now_ms += 7
        if event == RESTART:
            # A crash loses everything not persisted; the new replica resumes at H.
            replica = replica_for(subject, durable=durable)
            event = HeightStarted(height=H, validators=VALIDATORS)
        assert not isinstance(event, str)
        actions = replica.step(event, now_ms)
        _check_list(actions, signed, subject)
        assert len(of_type(actions, Decide)) <= 1
        for persist in of_type(actions, Persist):
            assert guard(persist.state) > guard(durable)  # the guard only moves forward
            durable = persist.state
        if replica.locked_value is not None:
            assert replica.valid_round >= replica.locked_round


def test_restart_raises_a_valid_round_older_than_the_lock() -> None:
    """An older record could hold a lock without the matching validValue; L15 needs it."""
    durable = DurableState(
        signed_height=H,
        signed_round=Round(2),
        signed_step=Step.PRECOMMIT,
        locked_value=X,
        locked_round=Round(1),
        valid_value=None,
        valid_round=NIL_ROUND,
    )
    replica = replica_for(V0, durable=durable)
    replica.step(HeightStarted(height=H, validators=VALIDATORS), 0)
    assert (replica.valid_value, replica.valid_round) == (X, 1)
    # In round 3 V0 proposes: it re-proposes X with validRound 1, asking nothing.
    out = feed(replica, [received(precommit(v, 1, 3, None)) for v in (V1, V2)])
    proposals = [m for m in broadcasts(out) if isinstance(m, Proposal)]
    assert [(p.round, p.value, p.valid_round) for p in proposals] == [(3, X, 1)]
    assert of_type(out, BuildValue) == []
