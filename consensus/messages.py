"""The vocabulary of the consensus core: messages, events in, actions out.

Theory of operation. The core (`consensus.replica.Replica`) is a pure state machine. The
shell feeds it one `Event` at a time with the current time in integer milliseconds and
executes the returned `Action`s in list order. Nothing here performs I/O.

Rules every user of these types relies on:
- A `Value` is opaque to the core: `value_id` (32 bytes) names it in votes and
  certificates, `payload` carries the bytes to propose. The application decides whether
  a payload is valid and matches its id (the core asks through `CheckValue`).
- Signed messages carry the signer's id and an Ed25519 signature over canonical bytes
  built by `consensus.wire` (a domain tag and the chain id are inside what is signed).
- `Persist` always precedes, in the same action list, any `Broadcast` whose signature it
  guards; the shell commits it durably before the broadcast leaves the process.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from consensus.config import ValidatorSet
from consensus.ids import Height, Round, ValidatorId

__all__ = [
    "NIL_ROUND",
    "VALUE_ID_SIZE",
    "Action",
    "ArmTimer",
    "Broadcast",
    "BuildValue",
    "CheckValue",
    "CommitCertificate",
    "CommitReceived",
    "Decide",
    "DurableState",
    "Event",
    "Evidence",
    "Height",
    "HeightStarted",
    "Message",
    "Persist",
    "Proposal",
    "ProposalReceived",
    "ReportEvidence",
    "Round",
    "Step",
    "TimeoutFired",
    "Timer",
    "ValidatorId",
    "Value",
    "ValueBuilt",
    "ValueChecked",
    "Vote",
    "VoteReceived",
    "VoteType",
]

VALUE_ID_SIZE = 32
NIL_ROUND = Round(
    -1
)  # the paper's -1: "no round" for lockedRound, validRound, validRound in proposals


class Step(enum.IntEnum):
    """Steps of a round, ordered: the signing guard compares (height, round, step) tuples."""

    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2


class Timer(enum.IntEnum):
    """What a timer is for: the paper's three timeouts, and the periodic re-broadcast of
    this replica's own messages of the current height (recovers from message loss)."""

    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2
    REBROADCAST = 3


class VoteType(enum.IntEnum):
    PREVOTE = 1
    PRECOMMIT = 2

    @property
    def step(self) -> Step:
        return Step.PREVOTE if self is VoteType.PREVOTE else Step.PRECOMMIT


@dataclass(frozen=True, slots=True, kw_only=True)
class Value:
    """A proposable value: an id that votes refer to, and the payload behind it."""

    value_id: bytes
    payload: bytes


# ---------------------------------------------------------------------------------------
# Signed messages.


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """PROPOSAL(h, r, v, validRound) signed by the proposer of (h, r).

    The signature covers value.value_id, not the payload; the application binds the
    payload to its id when it checks the value.
    """

    height: Height
    round: Round
    value: Value
    valid_round: Round
    proposer: ValidatorId
    signature: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Vote:
    """PREVOTE or PRECOMMIT for (h, r); value_id None is a vote for nil."""

    vote_type: VoteType
    height: Height
    round: Round
    value_id: bytes | None
    voter: ValidatorId
    signature: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitCertificate:
    """Precommits of distinct validators for one (height, round, value_id) whose voting
    power is more than 2/3 of the total. Verifiable by anyone holding the validator set
    (`consensus.crypto.verify_certificate`)."""

    height: Height
    round: Round
    value_id: bytes
    precommits: tuple[Vote, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """Two validly signed, conflicting votes of one validator for one (height, round, type)."""

    first: Vote
    second: Vote


Message = Proposal | Vote


# ---------------------------------------------------------------------------------------
# Durable state: what a restart must keep (SPEC: signing guard and lock).


@dataclass(frozen=True, slots=True, kw_only=True)
class DurableState:
    """What the replica must find again after a crash.

    (signed_height, signed_round, signed_step) is the last position at which this replica
    signed anything; it never signs at or before that position again, except that it may
    sign a proposal and then votes in the same round (the steps are ordered). The lock and
    the valid value are the paper's lockedValue/lockedRound and validValue/validRound;
    they belong to `signed_height`.
    """

    signed_height: Height
    signed_round: Round
    signed_step: Step | None  # None: nothing signed yet at signed_height
    locked_value: Value | None
    locked_round: Round
    valid_value: Value | None
    valid_round: Round

    @staticmethod
    def initial(height: Height) -> DurableState:
        return DurableState(
            signed_height=height,
            signed_round=Round(0),
            signed_step=None,
            locked_value=None,
            locked_round=NIL_ROUND,
            valid_value=None,
            valid_round=NIL_ROUND,
        )


# ---------------------------------------------------------------------------------------
# Events: facts the shell reports to the core.


@dataclass(frozen=True, slots=True, kw_only=True)
class HeightStarted:
    """The application has settled height-1 (or is fresh) and is ready for `height`.

    `validators` is the set in force at `height`, as the application's state says (a
    change decided in block h takes effect at h+2, so the set of `height` is known once
    height-2 is settled). The core judges every message and certificate of `height`
    against it; a replica not in it follows the height without proposing or voting.

    `passed_over` is the proposer order's input for `height`
    (`consensus.config.passed_over`): the application computes it from the commit
    certificates carried in the blocks it settled, which every node holds alike, so that
    every node expects the same proposer of each (height, round). Empty: the plain
    weighted round robin.
    """

    height: Height
    validators: ValidatorSet
    passed_over: frozenset[ValidatorId] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposalReceived:
    proposal: Proposal


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteReceived:
    vote: Vote


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutFired:
    """A timer armed by `ArmTimer` reached its deadline."""

    height: Height
    round: Round
    timer: Timer


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueChecked:
    """The application's answer to `CheckValue`."""

    height: Height
    value_id: bytes
    valid: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueBuilt:
    """The application's answer to `BuildValue`: what this proposer proposes."""

    height: Height
    round: Round
    value: Value


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitReceived:
    """A decided value with its certificate, learned from a peer (block sync)."""

    value: Value
    certificate: CommitCertificate


Event = (
    HeightStarted
    | ProposalReceived
    | VoteReceived
    | TimeoutFired
    | ValueChecked
    | ValueBuilt
    | CommitReceived
)


# ---------------------------------------------------------------------------------------
# Actions: what the core asks the shell to do, in order.


@dataclass(frozen=True, slots=True, kw_only=True)
class Persist:
    """Write `state` durably before executing any later action of the same list."""

    state: DurableState


@dataclass(frozen=True, slots=True, kw_only=True)
class Broadcast:
    """Send a message signed by this replica to every other validator. The core has
    already counted its own message; the shell must not feed it back."""

    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class ArmTimer:
    """Report `TimeoutFired(height, round, timer)` once `now_ms >= deadline_ms`. Timers are
    never cancelled: a stale one fires and the core ignores it."""

    deadline_ms: int
    height: Height
    round: Round
    timer: Timer


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckValue:
    """Ask the application whether `value` is valid at `height`; answer `ValueChecked`."""

    height: Height
    value: Value


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildValue:
    """Ask the application for a value to propose; answer `ValueBuilt`."""

    height: Height
    round: Round


@dataclass(frozen=True, slots=True, kw_only=True)
class Decide:
    """`value` is decided at `height`: final, never reverted. The shell settles it and
    then reports `HeightStarted(height + 1)`."""

    height: Height
    value: Value
    certificate: CommitCertificate


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportEvidence:
    evidence: Evidence


Action = Persist | Broadcast | ArmTimer | CheckValue | BuildValue | Decide | ReportEvidence
