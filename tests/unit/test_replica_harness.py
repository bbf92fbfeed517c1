"""Helpers shared by the replica tests (real keys, real signatures), and whole-cluster
tests: four replicas wired through a tiny lossless, in-order network.

Keys come from fixed seeds (sha256(b"v%d")), so every run signs the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import TypeVar

from consensus.config import ReplicaConfig, Validator, ValidatorSet
from consensus.crypto import Signer
from consensus.messages import (
    NIL_ROUND,
    Action,
    ArmTimer,
    Broadcast,
    BuildValue,
    CheckValue,
    Decide,
    DurableState,
    Event,
    Height,
    HeightStarted,
    Persist,
    Proposal,
    ProposalReceived,
    Round,
    TimeoutFired,
    ValidatorId,
    Value,
    ValueBuilt,
    ValueChecked,
    Vote,
    VoteReceived,
    VoteType,
)
from consensus.replica import Replica

CHAIN = "somnet-test"
COUNT = 4
IDS = [ValidatorId(f"v{i}") for i in range(COUNT)]
SEEDS = [hashlib.sha256(b"v%d" % i).digest() for i in range(COUNT)]
SIGNERS = {vid: Signer(CHAIN, vid, seed) for vid, seed in zip(IDS, SEEDS, strict=True)}
CONFIG = ReplicaConfig.for_tests(CHAIN)
H = Height(1)

A = TypeVar("A")


def validator_set(powers: Sequence[int] = (1, 1, 1, 1)) -> ValidatorSet:
    return ValidatorSet(
        tuple(
            Validator(validator_id=vid, public_key=SIGNERS[vid].public_key, voting_power=p)
            for vid, p in zip(IDS, powers, strict=True)
        )
    )


VALIDATORS = validator_set()


def proposer_of(height: int, round_: int, validators: ValidatorSet = VALIDATORS) -> ValidatorId:
    return validators.proposer(Height(height), Round(round_))


def replica_for(
    vid: ValidatorId,
    durable: DurableState | None = None,
    config: ReplicaConfig = CONFIG,
) -> Replica:
    state = durable if durable is not None else DurableState.initial(H)
    return Replica(config, SIGNERS[vid], state)


def value(tag: bytes) -> Value:
    return Value(value_id=hashlib.sha256(tag).digest(), payload=tag)


def proposal(height: int, round_: int, v: Value, valid_round: int = NIL_ROUND) -> Proposal:
    signer = SIGNERS[proposer_of(height, round_)]
    return signer.sign_proposal(Height(height), Round(round_), v, Round(valid_round))


def vote(
    vid: ValidatorId, vote_type: VoteType, height: int, round_: int, v: Value | bytes | None
) -> Vote:
    value_id = v.value_id if isinstance(v, Value) else v
    return SIGNERS[vid].sign_vote(vote_type, Height(height), Round(round_), value_id)


def prevote(vid: ValidatorId, height: int, round_: int, v: Value | bytes | None) -> Vote:
    return vote(vid, VoteType.PREVOTE, height, round_, v)


def precommit(vid: ValidatorId, height: int, round_: int, v: Value | bytes | None) -> Vote:
    return vote(vid, VoteType.PRECOMMIT, height, round_, v)


def received(message: Proposal | Vote) -> Event:
    if isinstance(message, Proposal):
        return ProposalReceived(proposal=message)
    return VoteReceived(vote=message)


def of_type(actions: Iterable[Action], kind: type[A]) -> list[A]:
    return [a for a in actions if isinstance(a, kind)]


def broadcasts(actions: Iterable[Action]) -> list[Proposal | Vote]:
    return [a.message for a in of_type(actions, Broadcast)]


def votes_out(actions: Iterable[Action], vote_type: VoteType) -> list[Vote]:
    return [m for m in broadcasts(actions) if isinstance(m, Vote) and m.vote_type is vote_type]


def feed(replica: Replica, events: Iterable[Event], now_ms: int = 0) -> list[Action]:
    """Step through several events; return all actions in order."""
    out: list[Action] = []
    for event in events:
        out += replica.step(event, now_ms)
    return out


def others(vid: ValidatorId) -> list[ValidatorId]:
    return [v for v in IDS if v != vid]


class Cluster:
    """Four replicas, a lossless FIFO network, an application that accepts every value,
    and a virtual clock that jumps to the next timer when nothing else is pending."""

    def __init__(self, silent: Sequence[ValidatorId] = ()) -> None:
        self.replicas = {vid: replica_for(vid) for vid in IDS}
        self.silent = set(silent)  # crashed from the start: receive and send nothing
        self.now_ms = 0
        self.queue: list[tuple[ValidatorId, Event]] = []
        self.timers: list[tuple[int, ValidatorId, ArmTimer]] = []
        self.decisions: dict[ValidatorId, list[Decide]] = {vid: [] for vid in IDS}
        self.all_actions: dict[ValidatorId, list[list[Action]]] = {vid: [] for vid in IDS}

    def start(self, height: int) -> None:
        for vid in IDS:
            self.queue.append((vid, HeightStarted(height=Height(height), validators=VALIDATORS)))

    def _execute(self, vid: ValidatorId, actions: list[Action]) -> None:
        self.all_actions[vid].append(actions)
        for action in actions:
            match action:
                case Broadcast():
                    self.queue += [(o, received(action.message)) for o in others(vid)]
                case ArmTimer():
                    self.timers.append((action.deadline_ms, vid, action))
                case BuildValue():
                    v = value(b"block-%d-%d-%s" % (action.height, action.round, vid.encode()))
                    self.queue.append(
                        (vid, ValueBuilt(height=action.height, round=action.round, value=v))
                    )
                case CheckValue():
                    self.queue.append(
                        (
                            vid,
                            ValueChecked(
                                height=action.height, value_id=action.value.value_id, valid=True
                            ),
                        )
                    )
                case Decide():
                    self.decisions[vid].append(action)
                case Persist():
                    pass
                case _:
                    pass

    def run(self, steps_max: int = 20_000, until_height: int | None = None) -> None:
        for _ in range(steps_max):
            if self.queue:
                vid, event = self.queue.pop(0)
            elif self.timers:
                self.timers.sort(key=lambda t: (t[0], t[1], t[2].timer))
                deadline, vid, timer = self.timers.pop(0)
                self.now_ms = max(self.now_ms, deadline)
                event = TimeoutFired(height=timer.height, round=timer.round, timer=timer.timer)
            else:
                return
            if vid in self.silent:
                continue
            actions = self.replicas[vid].step(event, self.now_ms)
            self._execute(vid, actions)
            live = [v for v in IDS if v not in self.silent]
            if until_height is not None and all(
                any(d.height == until_height for d in self.decisions[v]) for v in live
            ):
                return


def test_four_replicas_decide_in_round_zero() -> None:
    cluster = Cluster()
    cluster.start(1)
    cluster.run(until_height=1)
    decided = [cluster.decisions[v] for v in IDS]
    assert all(len(d) == 1 for d in decided)
    assert len({d[0].value for d in decided}) == 1
    assert all(d[0].certificate.round == 0 for d in decided)


def test_three_of_four_decide_when_the_round_zero_proposer_is_silent() -> None:
    silent = proposer_of(1, 0)
    cluster = Cluster(silent=[silent])
    cluster.start(1)
    cluster.run(until_height=1)
    live = [v for v in IDS if v != silent]
    assert all(len(cluster.decisions[v]) == 1 for v in live)
    assert len({cluster.decisions[v][0].value for v in live}) == 1
    # Round 0 had no proposal; the decision came in a later round.
    assert all(cluster.decisions[v][0].certificate.round >= 1 for v in live)


def test_consecutive_heights_decide_after_height_started() -> None:
    cluster = Cluster()
    for height in (1, 2, 3):
        cluster.start(height)
        cluster.run(until_height=height)
    for vid in IDS:
        assert [d.height for d in cluster.decisions[vid]] == [1, 2, 3]
    for height in (1, 2, 3):
        assert len({cluster.decisions[v][height - 1].value for v in IDS}) == 1
