"""Scripted Byzantine validators for the simulator.

Theory of operation. A Byzantine node runs a real `Replica` inside, so it follows the
protocol well enough to look alive, and the `ByzantineActor` rewrites what leaves it:
it equivocates as proposer (a different proposal to each half of its peers), double-votes
(a second vote for another value), stays silent, sends garbage bytes and well-formed
messages with bad signatures, and replays old messages. It signs with its own real key,
so everything it sends that is "validly signed" really is.

With more Byzantine validators than the protocol tolerates (the negative control), all
of them join one `ForkCoalition`: whenever one of them proposes, the coalition sends
value A to one half of the honest nodes and value B to the other half, and every member
votes A to the first half and B to the second. The honest halves then commit different
values, and the checkers must notice.

Rules:
- Actors never touch honest state; they only return (recipient, message or bytes) pairs.
- Every random choice comes from the generator passed in, so a seed replays exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import msgpack

from consensus.crypto import Signer
from consensus.messages import (
    VALUE_ID_SIZE,
    Height,
    Message,
    Proposal,
    Round,
    ValidatorId,
    Value,
    Vote,
    VoteType,
)
from consensus.wire import SIGNATURE_SIZE, encode_message

__all__ = ["BYZANTINE_BEHAVIOURS", "ByzantineActor", "ForkCoalition", "draw_behaviours"]

BYZANTINE_BEHAVIOURS = (
    "equivocate",
    "double_vote",
    "silent",
    "garbage",
    "bad_signature",
    "replay",
    "invalid_value",
)
HISTORY_MAX = 256  # messages remembered for replay
GARBAGE_SIZE_MAX = 300

ValueMaker = Callable[[Height, Round], Value]
"""Builds a fresh, valid value for (height, round)."""


def draw_behaviours(rng: random.Random, allowed: frozenset[str]) -> frozenset[str]:
    """One Byzantine node's script: silent alone sometimes, else a non-empty mix."""
    assert allowed <= set(BYZANTINE_BEHAVIOURS)
    if not allowed:
        return frozenset()
    if "silent" in allowed and rng.random() < 0.2:
        return frozenset({"silent"})
    active = sorted(allowed - {"silent"})
    chosen = frozenset(b for b in active if rng.random() < 0.5)
    if not chosen and active:
        chosen = frozenset({rng.choice(active)})
    assert chosen or allowed == {"silent"}
    return chosen or frozenset({"silent"})


@dataclass(slots=True, kw_only=True)
class ForkCoalition:
    """More than f colluding validators that split the honest nodes into two halves."""

    members: tuple[int, ...]
    halves: tuple[tuple[int, ...], tuple[int, ...]]
    signers: dict[int, Signer]
    """The members' keys: a fork is voted for by all of them at once."""
    forks: dict[tuple[Height, Round], tuple[Value, Value]] = field(default_factory=dict)

    def split(self, actor: ByzantineActor, message: Message) -> list[tuple[int, Message]]:
        key = (message.height, message.round)
        others = [m for m in self.members if m != actor.index]
        if isinstance(message, Proposal):
            forked = actor.make_value(message.height, message.round)
            self.forks[key] = (message.value, forked)
            first_message: Message = message
            second_message: Message = actor.signer.sign_proposal(
                message.height, message.round, forked, message.valid_round
            )
        else:
            fork = self.forks.get(key)
            if fork is None:  # an honest proposer's round: play along
                return [(p, message) for p in actor.peers]
            first_message = actor.signer.sign_vote(
                message.vote_type, message.height, message.round, fork[0].value_id
            )
            second_message = actor.signer.sign_vote(
                message.vote_type, message.height, message.round, fork[1].value_id
            )
        first = [(p, first_message) for p in (*self.halves[0], *others)]
        second = [(p, second_message) for p in self.halves[1]]
        assert len(first) + len(second) == len(actor.peers)
        if isinstance(message, Proposal):
            # Every member votes the fork at once, without waiting for its own replica,
            # so each half sees a full quorum for its value before its timeouts fire.
            first += self._fork_votes(message.height, message.round, self.forks[key][0], 0)
            second += self._fork_votes(message.height, message.round, self.forks[key][1], 1)
        return first + second

    def _fork_votes(
        self, height: Height, round_: Round, value: Value, half: int
    ) -> list[tuple[int, Message]]:
        votes = [
            self.signers[m].sign_vote(vote_type, height, round_, value.value_id)
            for m in self.members
            for vote_type in (VoteType.PREVOTE, VoteType.PRECOMMIT)
        ]
        return [(p, vote) for p in self.halves[half] for vote in votes]


class ByzantineActor:
    """Rewrites the outgoing messages of one Byzantine node and makes up extra traffic."""

    def __init__(
        self,
        *,
        index: int,
        signer: Signer,
        behaviours: frozenset[str],
        peers: tuple[int, ...],
        victims: tuple[ValidatorId, ...],
        rng: random.Random,
        make_value: ValueMaker,
        coalition: ForkCoalition | None,
    ) -> None:
        assert behaviours <= set(BYZANTINE_BEHAVIOURS)
        assert index not in peers
        self.index = index
        self.signer = signer
        self.behaviours = behaviours
        self.peers = peers
        self.victims = victims  # honest validators whose names it forges
        self.rng = rng
        self.make_value = make_value
        self.coalition = coalition
        self.history: list[bytes] = []
        self.alternatives: dict[tuple[Height, Round], Value] = {}
        self.position = (Height(0), Round(0))

    @property
    def silent(self) -> bool:
        return "silent" in self.behaviours and self.coalition is None

    def remember(self, data: bytes) -> None:
        """Keep a message seen or sent, for replay later (bounded, oldest dropped)."""
        if len(self.history) >= HISTORY_MAX:
            del self.history[self.rng.randrange(len(self.history))]
        self.history.append(data)
        assert len(self.history) <= HISTORY_MAX

    def wants_invalid_value(self) -> bool:
        return "invalid_value" in self.behaviours and self.rng.random() < 0.5

    def outgoing(self, message: Message) -> list[tuple[int, Message]]:
        """What to send instead of broadcasting `message` honestly."""
        self.position = (message.height, message.round)
        if self.coalition is not None:
            return self.coalition.split(self, message)
        if self.silent:
            return []
        second: Message | None = None
        if isinstance(message, Proposal) and "equivocate" in self.behaviours:
            value = self.make_value(message.height, message.round)
            self.alternatives[(message.height, message.round)] = value
            second = self.signer.sign_proposal(
                message.height, message.round, value, message.valid_round
            )
        if isinstance(message, Vote) and "double_vote" in self.behaviours:
            second = self.signer.sign_vote(
                message.vote_type, message.height, message.round, self._other_id(message)
            )
        if second is None or len(self.peers) < 2:
            return [(p, message) for p in self.peers]
        peers = list(self.peers)
        self.rng.shuffle(peers)
        cut = self.rng.randint(1, len(peers) - 1)
        return [(p, message) for p in peers[:cut]] + [(p, second) for p in peers[cut:]]

    def _other_id(self, vote: Vote) -> bytes | None:
        """A value id for the second vote: the equivocated value if there is one."""
        alternative = self.alternatives.get((vote.height, vote.round))
        if alternative is not None and alternative.value_id != vote.value_id:
            return alternative.value_id
        if vote.value_id is not None:
            return None
        return self.rng.randbytes(VALUE_ID_SIZE)

    def on_tick(self) -> list[tuple[int, bytes]]:
        """Extra traffic between protocol steps: garbage, forgeries and replays."""
        if self.coalition is not None or not self.peers:
            return []
        out: list[tuple[int, bytes]] = []
        target = self.rng.choice(self.peers)
        if "garbage" in self.behaviours:
            out.append((target, self._garbage()))
        if "bad_signature" in self.behaviours:
            out.append((target, encode_message(self._forgery())))
        if "replay" in self.behaviours and self.history:
            out.append((target, self.rng.choice(self.history)))
        assert len(out) <= 3
        return out

    def _garbage(self) -> bytes:
        """Bytes that must not decode: random noise, a truncated message, or a
        well-formed msgpack array with the wrong fields."""
        choice = self.rng.randrange(3)
        if choice == 0:
            return self.rng.randbytes(self.rng.randint(0, GARBAGE_SIZE_MAX))
        if choice == 1 and self.history:
            data = self.rng.choice(self.history)
            return data[: self.rng.randrange(len(data))]
        junk = [2, self.rng.randint(-5, 5), "x", None, b"\x00" * self.rng.randint(0, 40)]
        packed = msgpack.packb(junk, use_bin_type=True)
        assert isinstance(packed, bytes)
        return packed

    def _forgery(self) -> Message:
        """A well-formed message whose signature is wrong: in its own name, or in the
        name of an honest validator (an impersonation attempt)."""
        height, round_ = self.position
        name = self.rng.choice((self.signer.validator_id, *self.victims))
        signature = self.rng.randbytes(SIGNATURE_SIZE)
        if self.rng.random() < 0.3:
            value = self.make_value(height, round_)
            return Proposal(
                height=height,
                round=round_,
                value=value,
                valid_round=Round(-1),
                proposer=name,
                signature=signature,
            )
        return Vote(
            vote_type=self.rng.choice((VoteType.PREVOTE, VoteType.PRECOMMIT)),
            height=height,
            round=round_,
            value_id=self.rng.randbytes(VALUE_ID_SIZE),
            voter=name,
            signature=signature,
        )
