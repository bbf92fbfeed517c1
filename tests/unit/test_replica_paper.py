"""One test per rule of Algorithm 1 of "The latest gossip on BFT consensus"
(arXiv:1807.04938), in the manner of etcd-raft's raft_paper_test.go. Names cite the
paper's line numbers. Four validators of power 1: 2f+1 = 3, f+1 = 2.

At height 1 the proposers of rounds 0, 1, 2, 3 are v1, v2, v3, v0, so v0 is a plain
validator in rounds 0-2 and the proposer in round 3.
"""

from __future__ import annotations

import pytest

from consensus.messages import (
    NIL_ROUND,
    Action,
    ArmTimer,
    Broadcast,
    BuildValue,
    CheckValue,
    Decide,
    Height,
    HeightStarted,
    Persist,
    Proposal,
    ReportEvidence,
    Round,
    Step,
    TimeoutFired,
    Timer,
    ValidatorId,
    Value,
    ValueBuilt,
    ValueChecked,
    VoteType,
)
from consensus.replica import Replica
from tests.unit.test_replica_harness import (
    CONFIG,
    IDS,
    VALIDATORS,
    H,
    broadcasts,
    feed,
    of_type,
    precommit,
    prevote,
    proposal,
    proposer_of,
    received,
    replica_for,
    validator_set,
    value,
    votes_out,
)

V0, V1, V2, V3 = IDS
X = value(b"block x")
Y = value(b"block y")


def started(vid: ValidatorId = V0) -> Replica:
    replica = replica_for(vid)
    replica.step(HeightStarted(height=H, validators=VALIDATORS), 0)
    return replica


def checked(v: Value, valid: bool = True) -> ValueChecked:
    return ValueChecked(height=H, value_id=v.value_id, valid=valid)


def timeout(round_: int, timer: Timer) -> TimeoutFired:
    return TimeoutFired(height=H, round=Round(round_), timer=timer)


def timers(actions: list[Action], kind: Timer) -> list[ArmTimer]:
    return [a for a in of_type(actions, ArmTimer) if a.timer is kind]


def skip_to(replica: Replica, round_: int) -> list[Action]:
    """L55: two nil precommits of `round_` (f+1) pull the replica into that round."""
    voters = [v for v in IDS if v != replica.me][:2]
    out = feed(replica, [received(precommit(v, 1, round_, None)) for v in voters])
    assert replica.round == round_
    return out


def lock(replica: Replica, v: Value, round_: int) -> list[Action]:
    """Drive `replica` (not the round's proposer) to lock `v` in `round_` (L36)."""
    assert proposer_of(1, round_) != replica.me
    out: list[Action] = []
    if replica.round < round_:
        out += skip_to(replica, round_)
    out += feed(replica, [received(proposal(1, round_, v)), checked(v)])
    voters = [x for x in IDS if x != replica.me][:2]
    out += feed(replica, [received(prevote(x, 1, round_, v)) for x in voters])
    assert replica.locked_value == v
    assert replica.locked_round == round_
    return out


# ---------------------------------------------------------------------------------------
# L11-21: StartRound.


def test_l18_proposer_without_valid_value_asks_for_a_value_then_proposes_it() -> None:
    replica = replica_for(V1)
    out = replica.step(HeightStarted(height=H, validators=VALIDATORS), 0)
    assert of_type(out, BuildValue) == [BuildValue(height=H, round=Round(0))]
    assert broadcasts(out) == []
    out = replica.step(ValueBuilt(height=H, round=Round(0), value=X), 5)
    sent = broadcasts(out)
    assert isinstance(sent[0], Proposal)
    assert (sent[0].round, sent[0].value, sent[0].valid_round) == (0, X, NIL_ROUND)
    # L22: the proposer prevotes its own (valid by construction) value at once.
    assert [v.value_id for v in votes_out(out, VoteType.PREVOTE)] == [X.value_id]
    assert of_type(out, CheckValue) == []


def test_l21_non_proposer_arms_the_propose_timeout_and_the_rebroadcast_timer() -> None:
    out = replica_for(V0).step(HeightStarted(height=H, validators=VALIDATORS), 1000)
    assert [t.deadline_ms for t in timers(out, Timer.PROPOSE)] == [1000 + CONFIG.timeout_propose_ms]
    assert [t.deadline_ms for t in timers(out, Timer.REBROADCAST)] == [1000 + CONFIG.rebroadcast_ms]
    assert broadcasts(out) == []
    assert of_type(out, BuildValue) == []


def test_l15_proposer_reproposes_its_valid_value_with_its_valid_round() -> None:
    replica = started(V2)  # proposer of round 1
    lock(replica, X, 0)
    assert replica.valid_value == X
    out = feed(replica, [received(precommit(v, 1, 0, None)) for v in (V0, V1, V3)])
    out += replica.step(timeout(0, Timer.PRECOMMIT), 100)  # L65: next round
    assert of_type(out, BuildValue) == []
    proposals = [m for m in broadcasts(out) if isinstance(m, Proposal)]
    assert [(p.round, p.value, p.valid_round) for p in proposals] == [(1, X, 0)]


def test_stale_value_built_is_ignored() -> None:
    replica = replica_for(V1)
    replica.step(HeightStarted(height=H, validators=VALIDATORS), 0)
    out = replica.step(ValueBuilt(height=H, round=Round(1), value=X), 0)
    assert out == []
    assert replica.dropped["stale_value_built"] == 1
    bad = Value(value_id=b"short", payload=b"")
    assert replica.step(ValueBuilt(height=H, round=Round(0), value=bad), 0) == []
    assert replica.dropped["malformed_value_built"] == 1


# ---------------------------------------------------------------------------------------
# L22-27: prevote on a fresh proposal.


@pytest.mark.parametrize(
    ("valid", "expected"), [(True, X.value_id), (False, None)], ids=["valid", "invalid"]
)
def test_l22_prevote_the_proposal_if_valid_else_nil(valid: bool, expected: bytes | None) -> None:
    replica = started()
    out = replica.step(received(proposal(1, 0, X)), 0)
    assert of_type(out, CheckValue) == [CheckValue(height=H, value=X)]
    assert votes_out(out, VoteType.PREVOTE) == []  # valid(v) is not known yet
    out = replica.step(checked(X, valid), 0)
    assert [v.value_id for v in votes_out(out, VoteType.PREVOTE)] == [expected]
    assert replica.round_step is Step.PREVOTE


def test_l22_validity_is_asked_once_per_value_id() -> None:
    replica = started()
    out = feed(replica, [received(proposal(1, 0, X)), received(proposal(1, 0, X))])
    assert len(of_type(out, CheckValue)) == 1
    assert replica.dropped["duplicate"] == 1
    skip_to(replica, 1)
    out = feed(replica, [received(proposal(1, 1, X))])
    assert of_type(out, CheckValue) == []  # still pending: no second question


def test_l22_prevote_nil_when_locked_on_another_value() -> None:
    replica = started()
    lock(replica, X, 0)
    skip_to(replica, 1)
    out = replica.step(received(proposal(1, 1, Y)), 0)
    # Nil at once, without waiting for valid(Y) (which is still asked, for later rules).
    assert [v.value_id for v in votes_out(out, VoteType.PREVOTE)] == [None]


def test_l22_prevote_the_locked_value_when_it_is_proposed_again() -> None:
    replica = started()
    lock(replica, X, 0)
    skip_to(replica, 1)
    out = replica.step(received(proposal(1, 1, X)), 0)
    assert [v.value_id for v in votes_out(out, VoteType.PREVOTE)] == [X.value_id]


# ---------------------------------------------------------------------------------------
# L28-33: prevote on a re-proposal with a proof of lock.


def test_l28_prevote_nil_when_valid_round_is_older_than_the_lock() -> None:
    replica = started()
    feed(replica, [received(prevote(v, 1, 0, Y)) for v in (V1, V2, V3)])  # POL for Y in 0
    lock(replica, X, 1)
    skip_to(replica, 2)
    out = replica.step(received(proposal(1, 2, Y, valid_round=0)), 0)
    assert [v.value_id for v in votes_out(out, VoteType.PREVOTE)] == [None]


def test_l28_prevote_a_newer_proof_of_lock_unlocking_the_old_value() -> None:
    replica = started()
    lock(replica, X, 0)
    skip_to(replica, 1)
    feed(replica, [received(prevote(v, 1, 1, Y)) for v in (V1, V2, V3)])  # POL for Y in 1
    skip_to(replica, 2)
    out = replica.step(received(proposal(1, 2, Y, valid_round=1)), 0)
    out += replica.step(checked(Y), 0)
    assert [v.value_id for v in votes_out(out, VoteType.PREVOTE)] == [Y.value_id]


def test_l28_a_re_proposal_against_the_lock_waits_for_its_proof_of_lock() -> None:
    replica = started()
    lock(replica, X, 0)
    skip_to(replica, 2)
    out = feed(replica, [received(proposal(1, 2, Y, valid_round=1)), checked(Y)])
    assert votes_out(out, VoteType.PREVOTE) == []
    out = feed(replica, [received(prevote(v, 1, 1, Y)) for v in (V1, V2, V3)])
    assert [v.value_id for v in votes_out(out, VoteType.PREVOTE)] == [Y.value_id]


def test_l28_an_equivocators_second_prevote_completes_the_proof_of_lock() -> None:
    """Sim seeds 4 and 1473: a Byzantine prevoted X to us and Y to the others, and the
    others locked Y. The paper counts messages per value, so its Y prevote (forwarded
    to us later) must count for Y, or our lock on X is never released."""
    replica = started()
    lock(replica, X, 0)
    feed(replica, [received(prevote(V2, 1, 1, X))])
    feed(replica, [received(prevote(v, 1, 1, Y)) for v in (V1, V3)])
    skip_to(replica, 2)
    out = feed(replica, [received(proposal(1, 2, Y, valid_round=1)), checked(Y)])
    assert votes_out(out, VoteType.PREVOTE) == []  # 2 of 4 prevotes for Y in round 1
    out = replica.step(received(prevote(V2, 1, 1, Y)), 0)
    assert len(of_type(out, ReportEvidence)) == 1
    assert [v.value_id for v in votes_out(out, VoteType.PREVOTE)] == [Y.value_id]
    # The equivocator still counts once towards "2f+1 for anything" (L34).
    assert replica.votes.tally(Round(1), VoteType.PREVOTE).power_any == 3


def test_l28_the_proof_of_lock_is_forwarded_with_the_re_proposal_and_on_rebroadcast() -> None:
    """A replica locked on another value can only release it with the proof (L28); the
    re-proposer sends it along, since its voters re-send only two rounds."""
    replica = started(V2)  # proposer of round 1
    lock(replica, X, 0)  # prevotes of V0, V1 and its own for X in round 0
    proof = replica.votes.tally(Round(0), VoteType.PREVOTE).votes_for(X.value_id)
    assert {v.voter for v in proof} == {V0, V1, V2}
    feed(replica, [received(precommit(v, 1, 0, None)) for v in (V0, V1, V3)])
    out = replica.step(timeout(0, Timer.PRECOMMIT), 100)  # L65, then L16 re-proposes X
    assert set(proof) <= set(broadcasts(out))
    out = replica.step(timeout(1, Timer.REBROADCAST), 300)
    sent = broadcasts(out)
    assert set(proof) <= set(sent)
    assert len(sent) == len(set(sent))  # no message twice in one tick


def test_l28_the_proof_of_lock_goes_with_the_re_proposal_while_it_is_re_sent() -> None:
    """Own messages are re-sent for the current and previous round, and so is the proof
    of a re-proposal among them; after that, nothing refers to it any more."""
    replica = started(V2)  # proposer of round 1
    lock(replica, X, 0)
    proof = set(replica.votes.tally(Round(0), VoteType.PREVOTE).votes_for(X.value_id))
    feed(replica, [received(precommit(v, 1, 0, None)) for v in (V0, V1, V3)])
    replica.step(timeout(0, Timer.PRECOMMIT), 100)  # round 1: re-proposes X with vr 0
    skip_to(replica, 2)
    assert proof <= set(broadcasts(replica.step(timeout(2, Timer.REBROADCAST), 300)))
    replica.step(timeout(2, Timer.PROPOSE), 400)  # prevotes nil in round 2
    skip_to(replica, 3)
    sent = broadcasts(replica.step(timeout(3, Timer.REBROADCAST), 500))
    assert {m.round for m in sent} == {2}  # own messages of rounds 2 and 3 only
    assert not proof & set(sent)


def test_l28_a_holder_of_valid_value_that_does_not_re_propose_forwards_no_proof() -> None:
    """Forwarding from every holder made each rebroadcast tick cost n x n x n messages
    (808,000 in one height at 100 validators); the re-proposer's is enough."""
    replica = started(V0)  # proposer of neither round 0 nor round 1
    lock(replica, X, 0)
    assert replica.valid_value == X
    for round_, now_ms in ((0, 300), (1, 500)):
        if round_ == 1:
            skip_to(replica, 1)
        sent = broadcasts(replica.step(timeout(round_, Timer.REBROADCAST), now_ms))
        assert sent, "its own messages are still re-sent"
        assert all(m.voter == V0 for m in sent if not isinstance(m, Proposal))
        assert not any(isinstance(m, Proposal) for m in sent)


@pytest.mark.parametrize("locked", [False, True], ids=["unlocked", "locked-on-v"])
def test_l28_a_re_proposal_the_lock_allows_needs_no_proof(locked: bool) -> None:
    """SPEC deviation: the proof of lock is only asked of a replica locked on another
    value; votes are not persisted, so the proof may be lost for good after crashes."""
    replica = started()
    if locked:
        lock(replica, Y, 0)
    skip_to(replica, 2)
    out = feed(replica, [received(proposal(1, 2, Y, valid_round=1)), checked(Y)])
    assert [v.value_id for v in votes_out(out, VoteType.PREVOTE)] == [Y.value_id]


def test_l28_invalid_re_proposal_gets_a_nil_prevote() -> None:
    replica = started()
    feed(replica, [received(prevote(v, 1, 0, Y)) for v in (V1, V2, V3)])
    skip_to(replica, 1)
    out = feed(replica, [received(proposal(1, 1, Y, valid_round=0)), checked(Y, False)])
    assert [v.value_id for v in votes_out(out, VoteType.PREVOTE)] == [None]


# ---------------------------------------------------------------------------------------
# L34-35 and L61-64: prevote timeout.


def test_l34_two_thirds_of_mixed_prevotes_arm_the_prevote_timeout_once() -> None:
    replica = started()
    replica.step(timeout(0, Timer.PROPOSE), 0)  # L57: prevote nil, step prevote
    out = feed(replica, [received(prevote(V1, 1, 0, X))], now_ms=50)
    assert timers(out, Timer.PREVOTE) == []  # own nil + one X: 2 of 4
    out = feed(replica, [received(prevote(V2, 1, 0, Y)), received(prevote(V3, 1, 0, X))], 70)
    assert [t.deadline_ms for t in timers(out, Timer.PREVOTE)] == [70 + CONFIG.timeout_prevote_ms]


def test_l61_prevote_timeout_precommits_nil() -> None:
    replica = started()
    replica.step(timeout(0, Timer.PROPOSE), 0)
    feed(replica, [received(prevote(V1, 1, 0, X)), received(prevote(V2, 1, 0, Y))])
    out = replica.step(timeout(0, Timer.PREVOTE), 0)
    assert [v.value_id for v in votes_out(out, VoteType.PRECOMMIT)] == [None]
    assert replica.round_step is Step.PRECOMMIT
    # A second firing (or one for another round) changes nothing.
    assert replica.step(timeout(0, Timer.PREVOTE), 0) == []
    assert replica.step(timeout(3, Timer.PREVOTE), 0) == []


# ---------------------------------------------------------------------------------------
# L36-43: lock and valid value.


def test_l36_two_thirds_prevotes_for_the_proposal_lock_and_precommit_it() -> None:
    replica = started()
    out = lock(replica, X, 0)
    precommits = votes_out(out, VoteType.PRECOMMIT)
    assert [v.value_id for v in precommits] == [X.value_id]
    assert (replica.valid_value, replica.valid_round) == (X, 0)
    # The Persist before the precommit carries the lock (so a restart keeps it).
    index = out.index(Broadcast(message=precommits[0]))
    persist = [a for a in out[:index] if isinstance(a, Persist)][-1]
    assert (persist.state.locked_value, persist.state.locked_round) == (X, 0)
    assert (persist.state.valid_value, persist.state.valid_round) == (X, 0)  # for L15
    assert (persist.state.signed_round, persist.state.signed_step) == (0, Step.PRECOMMIT)


def test_l36_in_step_precommit_only_the_valid_value_is_updated() -> None:
    replica = started()
    replica.step(timeout(0, Timer.PROPOSE), 0)  # prevote nil
    feed(replica, [received(prevote(V1, 1, 0, X)), received(prevote(V2, 1, 0, X))])
    replica.step(timeout(0, Timer.PREVOTE), 0)  # precommit nil, step precommit
    out = feed(replica, [received(proposal(1, 0, X)), checked(X)])
    out += feed(replica, [received(prevote(V3, 1, 0, X))])  # X now has V1, V2, V3
    assert votes_out(out, VoteType.PRECOMMIT) == []
    assert (replica.valid_value, replica.valid_round) == (X, 0)
    assert (replica.locked_value, replica.locked_round) == (None, NIL_ROUND)


def test_l36_prevotes_for_an_invalid_value_are_not_followed() -> None:
    replica = started()
    feed(replica, [received(proposal(1, 0, X)), checked(X, False)])
    out = feed(replica, [received(prevote(v, 1, 0, X)) for v in (V1, V2, V3)])
    assert votes_out(out, VoteType.PRECOMMIT) == []
    assert replica.locked_value is None


# ---------------------------------------------------------------------------------------
# L44-46: precommit nil; L47-48 and L65-67: precommit timeout.


def test_l44_two_thirds_nil_prevotes_precommit_nil() -> None:
    replica = started()
    replica.step(timeout(0, Timer.PROPOSE), 0)
    out = feed(replica, [received(prevote(v, 1, 0, None)) for v in (V1, V2)])
    assert [v.value_id for v in votes_out(out, VoteType.PRECOMMIT)] == [None]


def test_l47_two_thirds_of_mixed_precommits_arm_the_precommit_timeout_once() -> None:
    replica = started()
    out = feed(replica, [received(precommit(V1, 1, 0, X)), received(precommit(V2, 1, 0, None))])
    assert timers(out, Timer.PRECOMMIT) == []
    out = feed(replica, [received(precommit(V3, 1, 0, Y))], now_ms=30)
    assert [t.deadline_ms for t in timers(out, Timer.PRECOMMIT)] == [
        30 + CONFIG.timeout_precommit_ms
    ]
    assert replica.round_step is Step.PROPOSE  # L47 has no step condition


def test_l65_precommit_timeout_starts_the_next_round() -> None:
    replica = started(V1)  # proposer of round 0, and of round 4; V2 proposes round 1
    out = replica.step(timeout(0, Timer.PRECOMMIT), 0)
    assert replica.round == 1
    assert replica.round_step is Step.PROPOSE
    assert [t.round for t in timers(out, Timer.PROPOSE)] == [1]
    assert of_type(out, BuildValue) == []  # not the proposer of round 1


def test_l57_propose_timeout_prevotes_nil_only_in_step_propose() -> None:
    replica = started()
    out = replica.step(timeout(0, Timer.PROPOSE), 0)
    assert [v.value_id for v in votes_out(out, VoteType.PREVOTE)] == [None]
    assert replica.step(timeout(0, Timer.PROPOSE), 0) == []
    assert replica.dropped["stale_timer"] == 1


@pytest.mark.parametrize(
    ("round_", "expected_ms"),
    [(0, 300), (1, 350), (4, 500), (94, 5000), (1000, 5000)],
)
def test_timeouts_grow_linearly_with_the_round_and_are_capped(
    round_: int, expected_ms: int
) -> None:
    assert CONFIG.timeout_ms(CONFIG.timeout_propose_ms, Round(round_)) == expected_ms
    replica = replica_for(V0)
    out = replica.step(HeightStarted(height=H, validators=VALIDATORS), 0)
    if round_ > 0:
        out = skip_to(replica, round_)  # L55 lands in the round and arms its timer (L21)
    assert [t.deadline_ms for t in timers(out, Timer.PROPOSE)] == [expected_ms]


# ---------------------------------------------------------------------------------------
# L49-54: decide.


def test_l49_decide_on_two_thirds_precommits_from_an_earlier_round() -> None:
    replica = started()
    skip_to(replica, 2)
    out = feed(replica, [received(proposal(1, 0, X)), checked(X)])
    out += feed(replica, [received(precommit(v, 1, 0, X)) for v in (V1, V2, V3)])
    decisions = of_type(out, Decide)
    assert len(decisions) == 1
    assert (decisions[0].height, decisions[0].value) == (H, X)
    certificate = decisions[0].certificate
    assert (certificate.round, certificate.value_id) == (0, X.value_id)
    assert sorted(v.voter for v in certificate.precommits) == [V1, V2, V3]


def test_l49_decide_waits_for_the_value_and_its_validity() -> None:
    replica = started()
    out = feed(replica, [received(precommit(v, 1, 0, X)) for v in (V1, V2, V3)])
    assert of_type(out, Decide) == []
    out = replica.step(received(proposal(1, 0, X)), 0)
    assert of_type(out, Decide) == []
    assert of_type(out, CheckValue) == [CheckValue(height=H, value=X)]
    out = replica.step(checked(X), 0)
    assert [d.value for d in of_type(out, Decide)] == [X]


def test_l49_exactly_one_decision_per_height() -> None:
    replica = started()
    feed(replica, [received(proposal(1, 0, X)), checked(X)])
    out = feed(replica, [received(precommit(v, 1, 0, X)) for v in (V1, V2, V3)])
    assert len(of_type(out, Decide)) == 1
    # More precommits, a later round's quorum, timers: nothing more is decided or signed.
    later = [received(proposal(1, 1, Y)), checked(Y)]
    later += [received(precommit(v, 1, 1, Y)) for v in (V1, V2, V3)]
    later += [timeout(0, Timer.PRECOMMIT), timeout(0, Timer.PROPOSE)]
    out = feed(replica, later)
    assert of_type(out, Decide) == []
    assert broadcasts(out) == []
    assert replica.decided


def test_after_deciding_the_replica_waits_for_the_next_height() -> None:
    replica = started()
    feed(replica, [received(proposal(1, 0, X)), checked(X)])
    feed(replica, [received(precommit(v, 1, 0, X)) for v in (V1, V2, V3)])
    out = replica.step(received(proposal(2, 0, Y)), 0)  # next height: buffered
    assert out == []
    out = replica.step(HeightStarted(height=Height(2), validators=VALIDATORS), 10)
    assert replica.height == 2
    assert replica.round == 0
    assert of_type(out, CheckValue) == [CheckValue(height=Height(2), value=Y)]


# ---------------------------------------------------------------------------------------
# L55-56: round skip.


@pytest.mark.parametrize(
    ("powers", "senders", "expected_round"),
    [
        ((1, 1, 1, 1), [IDS[1]], 0),  # one of four: not more than 1/3
        ((1, 1, 1, 1), [IDS[1], IDS[2]], 5),  # f+1
        ((3, 1, 1, 1), [IDS[0]], 5),  # one validator with half the power
        ((3, 1, 1, 1), [IDS[1], IDS[2]], 0),  # 2 of 6: not more than 1/3
    ],
)
def test_l55_f_plus_one_power_in_a_later_round_skips_to_it(
    powers: tuple[int, ...], senders: list[ValidatorId], expected_round: int
) -> None:
    validators = validator_set(powers)
    subject = IDS[3]
    replica = replica_for(subject)
    replica.step(HeightStarted(height=H, validators=validators), 0)
    feed(replica, [received(prevote(v, 1, 5, None)) for v in senders])
    assert replica.round == expected_round


def test_l55_skip_goes_to_the_highest_round_backed_by_f_plus_one() -> None:
    replica = started()
    feed(replica, [received(prevote(V1, 1, 3, None)), received(precommit(V2, 1, 7, None))])
    assert replica.round == 3
    feed(replica, [received(prevote(V3, 1, 9, None))])
    assert replica.round == 7  # V2 at 7 and V3 at 9: two validators at 7 or later


# ---------------------------------------------------------------------------------------
# Not in the paper: the stall rule (SPEC "stall rule").


def test_stall_rule_moves_a_step_on_that_no_quorum_will_ever_time_out() -> None:
    replica = started()
    stall_ms = sum(
        CONFIG.timeout_ms(base, Round(0))
        for base in (
            CONFIG.timeout_propose_ms,
            CONFIG.timeout_prevote_ms,
            CONFIG.timeout_precommit_ms,
        )
    )
    replica.step(timeout(0, Timer.PROPOSE), 300)  # prevote nil; nobody else is here
    out = replica.step(timeout(0, Timer.REBROADCAST), 300 + stall_ms - 1)
    assert votes_out(out, VoteType.PRECOMMIT) == []
    out = replica.step(timeout(0, Timer.REBROADCAST), 300 + stall_ms)
    assert [v.value_id for v in votes_out(out, VoteType.PRECOMMIT)] == [None]  # as L61
    assert replica.stalls == 1
    out = replica.step(timeout(0, Timer.REBROADCAST), 300 + 2 * stall_ms)
    assert replica.round == 1  # as L65
    assert replica.stalls == 2
    assert [t.round for t in timers(out, Timer.PROPOSE)] == [1]


def test_stall_rule_leaves_step_propose_to_its_own_timeout() -> None:
    replica = started()
    out = replica.step(timeout(0, Timer.REBROADCAST), 10_000)
    assert broadcasts(out) == []
    assert replica.stalls == 0
    assert replica.round_step is Step.PROPOSE
