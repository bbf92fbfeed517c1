"""Peer input and the shell's events: validation first, then routing; bounded buffers;
evidence of equivocation; block sync through CommitReceived; stale events; rebroadcast."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from consensus import crypto
from consensus.config import ReplicaConfig
from consensus.crypto import Signer
from consensus.messages import (
    Action,
    ArmTimer,
    Broadcast,
    CheckValue,
    CommitCertificate,
    CommitReceived,
    Decide,
    Event,
    Height,
    HeightStarted,
    Message,
    Persist,
    Proposal,
    ReportEvidence,
    Round,
    TimeoutFired,
    Timer,
    ValidatorId,
    Value,
    ValueChecked,
    Vote,
    VoteType,
)
from consensus.replica import ROUNDS_AHEAD_MAX, Replica
from tests.unit.test_replica_harness import (
    CHAIN,
    CONFIG,
    IDS,
    SEEDS,
    SIGNERS,
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
OUTSIDER = Signer(CHAIN, ValidatorId("v9"), hashlib.sha256(b"v9").digest())
OTHER_CHAIN = Signer("another-chain", V1, SEEDS[1])


def started(vid: ValidatorId = V0, config: ReplicaConfig = CONFIG) -> Replica:
    replica = replica_for(vid, config=config)
    replica.step(HeightStarted(height=H, validators=VALIDATORS), 0)
    return replica


def prevote_power(replica: Replica, round_: int, v: Value | None) -> int:
    tally = replica.votes.tally(Round(round_), VoteType.PREVOTE)
    return tally.power_for(None if v is None else v.value_id)


def decide_height_1(replica: Replica) -> None:
    feed(replica, [received(proposal(1, 0, X))])
    feed(replica, [ValueChecked(height=H, value_id=X.value_id, valid=True)])
    feed(replica, [received(prevote(v, 1, 0, X)) for v in (V1, V2)])  # lock, precommit
    feed(replica, [received(precommit(v, 1, 0, X)) for v in (V1, V2)])  # with ours: 3
    assert replica.decided


# ---------------------------------------------------------------------------------------
# Validation: every bad message is dropped, counted, and changes nothing.


def _bad_messages() -> list[tuple[str, Message, str]]:
    good_vote = prevote(V1, 1, 0, X)
    good_proposal = proposal(1, 0, X)
    short_id = Value(value_id=b"\x01" * 31, payload=b"p")
    return [
        (
            "bad vote signature",
            dataclasses.replace(good_vote, signature=b"\0" * 64),
            "bad_signature",
        ),
        (
            "bad proposal signature",
            dataclasses.replace(good_proposal, signature=b"\0" * 64),
            "bad_signature",
        ),
        (
            "vote signed for another value",
            dataclasses.replace(good_vote, value_id=Y.value_id),
            "bad_signature",
        ),
        (
            "unknown voter",
            OUTSIDER.sign_vote(VoteType.PREVOTE, H, Round(0), X.value_id),
            "unknown_validator",
        ),
        (
            "unknown proposer",
            OUTSIDER.sign_proposal(H, Round(0), X, Round(-1)),
            "unknown_validator",
        ),
        (
            "wrong chain id",
            OTHER_CHAIN.sign_vote(VoteType.PREVOTE, H, Round(0), None),
            "bad_signature",
        ),
        ("wrong proposer", SIGNERS[V2].sign_proposal(H, Round(0), X, Round(-1)), "wrong_proposer"),
        (
            "short value id in vote",
            SIGNERS[V1].sign_vote(VoteType.PREVOTE, H, Round(0), b"x"),
            "malformed",
        ),
        (
            "short value id in proposal",
            SIGNERS[V1].sign_proposal(H, Round(0), short_id, Round(-1)),
            "malformed",
        ),
        (
            "valid round not below round",
            SIGNERS[V1].sign_proposal(H, Round(0), X, Round(0)),
            "malformed",
        ),
        ("negative round", dataclasses.replace(good_vote, round=Round(-1)), "malformed"),
        ("height not an int", dataclasses.replace(good_vote, height="1"), "malformed"),  # type: ignore[arg-type]
        ("vote type not a VoteType", dataclasses.replace(good_vote, vote_type=1), "malformed"),  # type: ignore[arg-type]
        ("signature not bytes", dataclasses.replace(good_vote, signature="s"), "malformed"),  # type: ignore[arg-type]
        ("far-future height", prevote(V1, 3, 0, X), "height_future"),
        ("past height", prevote(V1, 0, 0, X), "height_past"),
        ("own key, never signed here", prevote(V0, 1, 0, X), "own_message_not_signed_here"),
    ]


@pytest.mark.parametrize(
    ("case", "message", "reason"), _bad_messages(), ids=lambda x: x if isinstance(x, str) else ""
)
def test_bad_peer_input_is_dropped_and_counted(case: str, message: Message, reason: str) -> None:
    replica = started()
    out = replica.step(received(message), 0)
    assert out == [], case
    assert replica.dropped == {reason: 1}
    assert replica.proposals == {}
    assert replica.votes.vote_count() == 0
    assert replica.future == {}


def test_votes_too_far_ahead_are_not_kept_but_count_towards_a_round_skip() -> None:
    replica = started()
    far = ROUNDS_AHEAD_MAX + 1
    out = replica.step(received(prevote(V1, 1, far, X)), 0)
    assert out == []
    assert replica.dropped["round_too_far"] == 1
    assert replica.votes.vote_count() == 0
    replica.step(received(prevote(V2, 1, far, X)), 0)
    assert replica.round == far  # f+1 senders there: L55 jumps, however far
    replica.step(received(prevote(V3, 1, far, X)), 0)
    assert prevote_power(replica, far, X) == 1  # now inside the window: kept


def test_duplicate_messages_are_idempotent() -> None:
    replica = started()
    vote = prevote(V1, 1, 0, X)
    feed(replica, [received(vote)])
    out = feed(replica, [received(vote), received(vote)])
    assert out == []
    assert prevote_power(replica, 0, X) == 1
    assert replica.dropped["duplicate"] == 2


# ---------------------------------------------------------------------------------------
# The next height: buffered, bounded, replayed.


def test_messages_of_the_next_height_are_buffered_and_replayed() -> None:
    replica = started()
    early = [prevote(v, 2, 0, Y) for v in (V1, V2)] + [proposal(2, 0, Y)]
    assert feed(replica, [received(m) for m in early]) == []
    decide_height_1(replica)
    out = replica.step(HeightStarted(height=Height(2), validators=VALIDATORS), 0)
    assert of_type(out, CheckValue) == [CheckValue(height=Height(2), value=Y)]
    assert replica.votes.tally(Round(0), VoteType.PREVOTE).power_for(Y.value_id) == 2
    assert replica.future == {}


def test_next_height_buffer_is_bounded_in_total_and_per_sender() -> None:
    config = dataclasses.replace(CONFIG, future_messages_max=8)  # 2 per validator
    replica = started(config=config)
    for r in range(5):
        for voter in (V1, V2, V3):
            replica.step(received(prevote(voter, 2, r, None)), 0)
    assert len(replica.future) == 6
    assert replica.dropped["buffer_full"] == 9
    config = dataclasses.replace(CONFIG, future_messages_max=4)  # 1 per validator
    replica = started(config=config)
    feed(replica, [received(prevote(v, 2, 0, None)) for v in (V1, V2, V3)])
    feed(replica, [received(precommit(v, 2, 0, None)) for v in (V1, V2)])
    assert len(replica.future) == 3
    assert replica.dropped["buffer_full"] == 2


def test_before_the_first_height_messages_wait_for_it() -> None:
    replica = replica_for(V0)  # durable: initial(1)
    assert replica.step(received(proposal(1, 0, X)), 0) == []
    assert replica.step(received(prevote(V1, 5, 0, X)), 0) == []
    assert replica.dropped["height_not_started"] == 1
    out = replica.step(HeightStarted(height=H, validators=VALIDATORS), 0)
    assert of_type(out, CheckValue) == [CheckValue(height=H, value=X)]


# ---------------------------------------------------------------------------------------
# Evidence.


def test_equivocation_is_reported_once_and_an_unproposed_second_value_is_not_counted() -> None:
    replica = started()
    first, second, third = (prevote(V1, 1, 0, v) for v in (X, Y, None))
    assert feed(replica, [received(first)]) == []
    out = replica.step(received(second), 0)
    reports = of_type(out, ReportEvidence)
    assert [(r.evidence.first, r.evidence.second) for r in reports] == [(first, second)]
    assert crypto.verify_evidence(CHAIN, reports[0].evidence, VALIDATORS)
    assert of_type(replica.step(received(third), 0), ReportEvidence) == []
    assert prevote_power(replica, 0, X) == 1
    assert prevote_power(replica, 0, Y) == 0
    # Another type in the same round is a separate position.
    feed(replica, [received(precommit(V1, 1, 0, X))])
    out = replica.step(received(precommit(V1, 1, 0, Y)), 0)
    assert len(of_type(out, ReportEvidence)) == 1


def test_a_second_vote_for_a_proposed_value_counts_for_it_but_once_for_anything() -> None:
    """The paper counts messages per value; safety holds since two quorums in one round
    would need more than 1/3 voting both ways (consensus.quorum)."""
    replica = started()
    feed(replica, [received(proposal(1, 0, Y))])
    first, second = prevote(V1, 1, 0, X), prevote(V1, 1, 0, Y)
    out = feed(replica, [received(first), received(second), received(second)])
    assert len(of_type(out, ReportEvidence)) == 1
    assert prevote_power(replica, 0, X) == 1
    assert prevote_power(replica, 0, Y) == 1
    assert replica.votes.tally(Round(0), VoteType.PREVOTE).power_any == 1
    assert replica.dropped["duplicate"] == 1
    assert replica.dropped["equivocation"] == 1


# ---------------------------------------------------------------------------------------
# Block sync.


def certificate(
    voters: list[ValidatorId], height: int = 1, v: Value = X, round_: int = 0
) -> CommitCertificate:
    precommits = tuple(precommit(x, height, round_, v) for x in voters)
    return CommitCertificate(
        height=Height(height), round=Round(round_), value_id=v.value_id, precommits=precommits
    )


def test_commit_received_with_a_valid_certificate_decides() -> None:
    replica = started()
    cert = certificate([V1, V2, V3], round_=4)
    out = replica.step(CommitReceived(value=X, certificate=cert), 0)
    assert of_type(out, Decide) == [Decide(height=H, value=X, certificate=cert)]
    out = replica.step(CommitReceived(value=X, certificate=cert), 0)
    assert out == []
    assert replica.dropped["commit_stale"] == 1


def _forged() -> list[tuple[str, Value, CommitCertificate, str]]:
    good = certificate([V1, V2, V3])
    bad_sig = dataclasses.replace(good.precommits[0], signature=b"\1" * 64)
    return [
        ("too little power", X, certificate([V1, V2]), "commit_bad_certificate"),
        (
            "duplicate voter",
            X,
            dataclasses.replace(good, precommits=(*good.precommits[:2], good.precommits[0])),
            "commit_bad_certificate",
        ),
        (
            "bad signature",
            X,
            dataclasses.replace(good, precommits=(bad_sig, *good.precommits[1:])),
            "commit_bad_certificate",
        ),
        ("value does not match", Y, good, "commit_mismatch"),
        ("other height", X, certificate([V1, V2, V3], height=2), "commit_stale"),
        (
            "certificate relabelled to another value",
            Y,
            dataclasses.replace(good, value_id=Y.value_id),
            "commit_bad_certificate",
        ),
    ]


@pytest.mark.parametrize(
    ("case", "v", "cert", "reason"), _forged(), ids=lambda x: x if isinstance(x, str) else ""
)
def test_commit_received_with_a_forged_certificate_is_dropped(
    case: str, v: Value, cert: CommitCertificate, reason: str
) -> None:
    replica = started()
    assert replica.step(CommitReceived(value=v, certificate=cert), 0) == [], case
    assert replica.dropped == {reason: 1}
    assert not replica.decided


# ---------------------------------------------------------------------------------------
# Stale events from the shell.


def test_stale_events_are_ignored_and_counted() -> None:
    replica = started()
    events: list[Event] = [
        HeightStarted(height=H, validators=VALIDATORS),  # already running
        HeightStarted(height=Height(0), validators=VALIDATORS),
        ValueChecked(height=H, value_id=X.value_id, valid=True),  # never asked
        TimeoutFired(height=Height(7), round=Round(0), timer=Timer.PROPOSE),
        TimeoutFired(height=Height(7), round=Round(0), timer=Timer.REBROADCAST),
        TimeoutFired(height=H, round=Round(3), timer=Timer.PRECOMMIT),
    ]
    assert feed(replica, events) == []
    assert replica.dropped == {
        "stale_height_started": 2,
        "stale_value_checked": 1,
        "stale_timer": 3,
    }
    assert replica.round == 0


def test_value_checked_before_the_start_is_stale() -> None:
    replica = replica_for(V0)
    replica.step(ValueChecked(height=H, value_id=X.value_id, valid=True), 0)
    assert replica.dropped["stale_value_checked"] == 1


# ---------------------------------------------------------------------------------------
# Rebroadcast: own messages again, never re-signed, one timer kept armed.


def test_rebroadcast_resends_own_messages_without_persisting_and_rearms() -> None:
    replica = started()
    signed = feed(replica, [received(proposal(1, 0, X))])
    signed += feed(replica, [ValueChecked(height=H, value_id=X.value_id, valid=True)])
    own = broadcasts(signed)
    assert len(own) == 1
    out = replica.step(TimeoutFired(height=H, round=Round(0), timer=Timer.REBROADCAST), 400)
    assert broadcasts(out) == own
    assert of_type(out, Persist) == []
    rearmed = [a for a in of_type(out, ArmTimer) if a.timer is Timer.REBROADCAST]
    assert [a.deadline_ms for a in rearmed] == [400 + CONFIG.rebroadcast_ms]


def test_rebroadcast_keeps_only_the_two_latest_rounds() -> None:
    replica = started()
    feed(replica, [TimeoutFired(height=H, round=Round(0), timer=Timer.PROPOSE)])  # nil, r0
    for r in (1, 2):
        feed(replica, [received(precommit(v, 1, r, None)) for v in (V1, V2)])
        feed(replica, [TimeoutFired(height=H, round=Round(r), timer=Timer.PROPOSE)])
    out = replica.step(TimeoutFired(height=H, round=Round(0), timer=Timer.REBROADCAST), 0)
    assert sorted(m.round for m in broadcasts(out)) == [1, 2]


def test_rebroadcast_continues_after_the_decision() -> None:
    replica = started()
    decide_height_1(replica)
    out = replica.step(TimeoutFired(height=H, round=Round(0), timer=Timer.REBROADCAST), 0)
    sent = broadcasts(out)
    assert [m.vote_type for m in sent if isinstance(m, Vote)] == [
        VoteType.PREVOTE,
        VoteType.PRECOMMIT,
    ]


# ---------------------------------------------------------------------------------------
# valid(v) is cached per value id, but tied to the payload that was judged.


def test_an_invalid_payload_under_an_id_does_not_condemn_the_real_payload() -> None:
    replica = started()
    bogus = Value(value_id=X.value_id, payload=b"garbage")
    out = feed(replica, [received(proposal(1, 0, bogus))])
    assert of_type(out, CheckValue) == [CheckValue(height=H, value=bogus)]
    out = feed(replica, [ValueChecked(height=H, value_id=X.value_id, valid=False)])
    assert [v.value_id for v in votes_out(out, VoteType.PREVOTE)] == [None]
    feed(replica, [received(precommit(v, 1, 1, None)) for v in (V1, V2)])
    out = feed(replica, [received(proposal(1, 1, X))])
    assert of_type(out, CheckValue) == [CheckValue(height=H, value=X)]
    out = feed(replica, [ValueChecked(height=H, value_id=X.value_id, valid=True)])
    assert [v.value_id for v in votes_out(out, VoteType.PREVOTE)] == [X.value_id]


def test_another_payload_under_a_valid_id_is_invalid_without_asking() -> None:
    replica = started()
    feed(replica, [received(proposal(1, 0, X))])
    feed(replica, [ValueChecked(height=H, value_id=X.value_id, valid=True)])
    feed(replica, [received(precommit(v, 1, 1, None)) for v in (V1, V2)])
    bogus = Value(value_id=X.value_id, payload=b"garbage")
    out = feed(replica, [received(proposal(1, 1, bogus))])
    assert of_type(out, CheckValue) == []
    assert [v.value_id for v in votes_out(out, VoteType.PREVOTE)] == [None]


def test_a_second_different_proposal_in_a_round_is_ignored() -> None:
    replica = started()
    feed(replica, [received(proposal(1, 0, X))])
    out: list[Action] = feed(replica, [received(proposal(1, 0, Y))])
    assert out == []
    assert replica.dropped["proposal_conflict"] == 1
    assert isinstance(replica.proposals[Round(0)], Proposal)
    assert replica.proposals[Round(0)].value == X
    assert of_type(out, Broadcast) == []


def test_a_proposal_with_a_non_bytes_payload_is_malformed() -> None:
    replica = started()
    good = proposal(1, 0, X)
    bad = dataclasses.replace(good, value=Value(value_id=X.value_id, payload="text"))  # type: ignore[arg-type]
    assert replica.step(received(bad), 0) == []
    assert replica.dropped == {"malformed": 1}


def test_a_buffered_message_is_kept_once() -> None:
    replica = started()
    vote = prevote(V1, 2, 0, X)
    feed(replica, [received(vote), received(vote)])
    assert list(replica.future) == [vote]
    assert replica.dropped["duplicate"] == 1


def test_a_pending_check_for_one_payload_is_followed_by_one_for_the_other() -> None:
    replica = started()
    bogus = Value(value_id=X.value_id, payload=b"garbage")
    out = feed(replica, [received(proposal(1, 0, bogus))])
    feed(replica, [received(precommit(v, 1, 1, None)) for v in (V1, V2)])  # to round 1
    out = feed(replica, [received(proposal(1, 1, X))])
    assert of_type(out, CheckValue) == []  # one question per id at a time
    out = feed(replica, [ValueChecked(height=H, value_id=X.value_id, valid=False)])
    assert of_type(out, CheckValue) == [CheckValue(height=H, value=X)]


def test_a_polka_waits_for_the_validity_answer() -> None:
    replica = started()
    feed(replica, [TimeoutFired(height=H, round=Round(0), timer=Timer.PROPOSE)])  # nil
    feed(replica, [received(proposal(1, 0, X))])  # CheckValue pending
    out = feed(replica, [received(prevote(v, 1, 0, X)) for v in (V1, V2, V3)])
    assert votes_out(out, VoteType.PRECOMMIT) == []
    out = feed(replica, [ValueChecked(height=H, value_id=X.value_id, valid=True)])
    assert [v.value_id for v in votes_out(out, VoteType.PRECOMMIT)] == [X.value_id]
    assert replica.locked_value == X
