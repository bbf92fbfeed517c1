"""The validator set per height (issue 13): each HeightStarted brings the set of its
height; a replica outside it follows without proposing or voting; messages of the next
height are judged against that height's set when it starts; a certificate is judged
against the set of its height."""

from __future__ import annotations

import dataclasses
import hashlib

from consensus.config import Validator, ValidatorSet
from consensus.crypto import Signer
from consensus.messages import (
    ArmTimer,
    BuildValue,
    CommitCertificate,
    CommitReceived,
    Decide,
    DurableState,
    Height,
    HeightStarted,
    Proposal,
    Round,
    TimeoutFired,
    Timer,
    ValidatorId,
    Value,
    ValueChecked,
    Vote,
    VoteType,
)
from consensus.replica import Replica
from tests.unit.test_replica_harness import (
    CHAIN,
    CONFIG,
    IDS,
    SIGNERS,
    VALIDATORS,
    H,
    broadcasts,
    feed,
    of_type,
    received,
    replica_for,
    value,
    votes_out,
)

V0, V1, V2, V3 = IDS
V4 = ValidatorId("v4")
ALL_SIGNERS = {**SIGNERS, V4: Signer(CHAIN, V4, hashlib.sha256(b"v4").digest())}
X = value(b"block x")

# Height 1 and 2: v0..v3 (VALIDATORS). From height 3: v0 leaves, v4 joins.
LATER = ValidatorSet(
    tuple(
        Validator(validator_id=vid, public_key=ALL_SIGNERS[vid].public_key, voting_power=1)
        for vid in (V1, V2, V3, V4)
    )
)


def started(height: int, validators: ValidatorSet) -> HeightStarted:
    return HeightStarted(height=Height(height), validators=validators)


def replica_of(vid: ValidatorId) -> Replica:
    if vid in SIGNERS:
        return replica_for(vid)
    return Replica(CONFIG, ALL_SIGNERS[vid], DurableState.initial(H))


def sign_proposal(validators: ValidatorSet, height: int, round_: int, v: Value) -> Proposal:
    proposer = validators.proposer(Height(height), Round(round_))
    return ALL_SIGNERS[proposer].sign_proposal(Height(height), Round(round_), v, Round(-1))


def sign_vote(vid: ValidatorId, vote_type: VoteType, height: int, v: Value | None) -> Vote:
    value_id = None if v is None else v.value_id
    return ALL_SIGNERS[vid].sign_vote(vote_type, Height(height), Round(0), value_id)


def certificate(height: int, voters: tuple[ValidatorId, ...], v: Value) -> CommitCertificate:
    return CommitCertificate(
        height=Height(height),
        round=Round(0),
        value_id=v.value_id,
        precommits=tuple(sign_vote(vid, VoteType.PRECOMMIT, height, v) for vid in voters),
    )


def test_a_non_member_neither_proposes_nor_votes() -> None:
    replica = replica_of(V4)
    out = replica.step(started(1, VALIDATORS), 0)
    assert not replica.member
    assert out == []  # no BuildValue, no timer, nothing signed
    proposal = sign_proposal(VALIDATORS, 1, 0, X)
    votes = [sign_vote(vid, VoteType.PREVOTE, 1, X) for vid in (V0, V1, V2)]
    out = feed(replica, [received(proposal), *map(received, votes)])
    out += replica.step(ValueChecked(height=H, value_id=X.value_id, valid=True), 10)
    out += replica.step(TimeoutFired(height=H, round=Round(0), timer=Timer.PROPOSE), 10_000)
    assert broadcasts(out) == []
    assert of_type(out, ArmTimer) == []
    assert replica.dropped["not_a_member"] == 4
    assert replica.durable.signed_step is None
    # It learns the decision by block sync, judged against the height's set.
    out = replica.step(CommitReceived(value=X, certificate=certificate(1, (V0, V1, V2), X)), 20)
    assert [d.value for d in of_type(out, Decide)] == [X]


def test_a_validator_that_joins_at_h_plus_2_votes_from_h_plus_2() -> None:
    replica = replica_of(V4)
    replica.step(started(1, VALIDATORS), 0)
    # Height 1 decided while following; the shell starts 2, then 3 with the new set.
    replica.step(CommitReceived(value=X, certificate=certificate(1, (V0, V1, V2), X)), 1)
    assert replica.step(started(2, VALIDATORS), 2) == []
    out = replica.step(started(3, LATER), 3)
    assert replica.member
    if LATER.proposer(Height(3), Round(0)) == V4:
        assert of_type(out, BuildValue) != []
        return
    y = value(b"block y at 3")
    out = replica.step(received(sign_proposal(LATER, 3, 0, y)), 4)
    out += replica.step(ValueChecked(height=Height(3), value_id=y.value_id, valid=True), 5)
    prevotes = votes_out(out, VoteType.PREVOTE)
    assert [(v.voter, v.height, v.value_id) for v in prevotes] == [(V4, 3, y.value_id)]


def test_the_proposer_is_chosen_from_the_heights_set() -> None:
    # The proposer of (3, r) by LATER, where v0 is gone: v0's proposal is refused.
    r = next(r for r in range(8) if VALIDATORS.proposer(Height(3), Round(r)) == V0)
    replica = replica_of(V1)
    replica.step(started(3, LATER), 0)
    forged = SIGNERS[V0].sign_proposal(Height(3), Round(r), X, Round(-1))
    replica.step(received(forged), 1)
    assert replica.dropped["unknown_validator"] == 1
    wrong = next(v for v in (V1, V2, V3, V4) if v != LATER.proposer(Height(3), Round(0)))
    replica.step(received(ALL_SIGNERS[wrong].sign_proposal(Height(3), Round(0), X, Round(-1))), 2)
    assert replica.dropped["wrong_proposer"] == 1


def test_next_height_messages_of_a_joiner_are_accepted_when_its_height_starts() -> None:
    replica = replica_of(V1)
    replica.step(started(2, VALIDATORS), 0)
    joiner = sign_vote(V4, VoteType.PREVOTE, 3, X)
    leaver = sign_vote(V0, VoteType.PREVOTE, 3, X)  # a member now, gone at height 3
    stranger_forged = dataclasses.replace(
        sign_vote(V4, VoteType.PRECOMMIT, 3, X), signature=b"x" * 64
    )
    feed(replica, [received(joiner), received(leaver), received(stranger_forged)])
    assert set(replica.future) == {joiner, leaver, stranger_forged}  # judged later
    assert replica.future[leaver] == SIGNERS[V0].public_key  # checked with v0's key already
    assert replica.future[joiner] is None  # v4 has no key in height 2's set
    replica.step(started(3, LATER), 10)
    assert replica.votes.holds(joiner)
    assert not replica.votes.holds(leaver)
    assert replica.dropped["unknown_validator"] == 1
    assert replica.dropped["bad_signature"] == 1
    assert replica.future == {}


def test_next_height_messages_of_a_non_member_are_dropped_when_it_starts() -> None:
    replica = replica_of(V0)  # leaves at height 3
    replica.step(started(2, VALIDATORS), 0)
    replica.step(received(sign_vote(V1, VoteType.PREVOTE, 3, X)), 1)
    out = replica.step(started(3, LATER), 2)
    assert not replica.member
    assert out == []
    assert replica.dropped["not_a_member"] == 1


def test_a_certificate_is_judged_against_the_set_of_its_height() -> None:
    replica = replica_of(V1)
    replica.step(started(3, LATER), 0)
    # A quorum of the old set (v0, v1, v2) is only 2 of 4 in height 3's set.
    old = certificate(3, (V0, V1, V2), X)
    out = replica.step(CommitReceived(value=X, certificate=old), 1)
    assert of_type(out, Decide) == []
    assert replica.dropped["commit_bad_certificate"] == 1
    new = certificate(3, (V1, V2, V4), X)
    out = replica.step(CommitReceived(value=X, certificate=new), 2)
    assert [d.certificate for d in of_type(out, Decide)] == [new]


def test_strangers_share_only_part_of_the_next_height_buffer() -> None:
    config = dataclasses.replace(CONFIG, future_messages_max=8)
    replica = Replica(config, SIGNERS[V1], DurableState.initial(H))
    replica.step(started(1, VALIDATORS), 0)
    names = [ValidatorId(f"z{i}") for i in range(6)]
    forged = [
        Vote(
            vote_type=VoteType.PREVOTE,
            height=Height(2),
            round=Round(0),
            value_id=None,
            voter=name,
            signature=b"s" * 64,
        )
        for name in names
    ]
    feed(replica, [received(v) for v in forged])
    assert len(replica.future) == 4  # half of 8: members keep the other half
    assert replica.dropped["buffer_full"] == 2
    members = [sign_vote(vid, VoteType.PREVOTE, 2, None) for vid in (V0, V2, V3)]
    feed(replica, [received(v) for v in members])
    assert all(v in replica.future for v in members)
    bad = dataclasses.replace(sign_vote(V0, VoteType.PRECOMMIT, 2, None), signature=b"y" * 64)
    replica.step(received(bad), 1)
    assert bad not in replica.future
    assert replica.dropped["bad_signature"] == 1
