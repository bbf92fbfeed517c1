"""Static configuration of a replica: the validator set, the proposer order and the
timeouts.

The validator set is ordered by validator id so that every node derives the same
proposer schedule and the same set hash from the same genesis.

Proposer order (leader reputation, as Aptos' but simpler). The plain order is a smooth
weighted round robin. A validator that is down would still get its turns, and each of
them costs a propose timeout: one validator down of four cut the block rate to about a
quarter. So the first `PASSED_OVER_ROUNDS` rounds of a height pass over the validators
that signed none of the last `PROPOSER_WINDOW_HEIGHTS` commit certificates carried in
blocks (`passed_over`), and later rounds follow the plain order, in which every validator
keeps a turn. Safety does not depend on who proposes, only on every node expecting the
same proposer for (height, round): the input is the certificates carried in blocks
(block k+1 carries the certificate of k), which every node holds alike once it settled
them, never the certificate a node decided with (nodes may hold different ones).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import msgpack

from consensus.errors import ConfigError
from consensus.ids import Height, Round, ValidatorId

__all__ = [
    "PASSED_OVER_ROUNDS",
    "PROPOSER_WINDOW_HEIGHTS",
    "ReplicaConfig",
    "Validator",
    "ValidatorSet",
    "passed_over",
]

PUBLIC_KEY_SIZE = 32
VALIDATORS_MAX = 100
VOTING_POWER_TOTAL_MAX = 10_000  # bounds the precomputed proposer schedule
TAG_VALIDATOR_SET = b"somnet/validator-set/v1"
PROPOSER_WINDOW_HEIGHTS = 10
"""How many of the latest carried certificates the proposer order looks back on. With
n validators a healthy one is left out of one certificate (2f+1 precommits) with a
chance of about 1/3, of ten in a row with about 1/60,000; a validator down is passed over
once the window has filled after it stopped signing."""
PASSED_OVER_ROUNDS = 2
"""Rounds 0 and 1 of a height pass over the inactive validators: two different active
proposers before a down one can get a turn again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Validator:
    validator_id: ValidatorId
    public_key: bytes
    voting_power: int


@dataclass(frozen=True, slots=True)
class ValidatorSet:
    """An ordered set of validators with weighted round-robin proposer selection."""

    validators: tuple[Validator, ...]
    # Derived once: every vote asks for its sender and the quorum, which would otherwise
    # walk the whole set (at 100 validators a third of the simulator's time).
    _by_id: dict[ValidatorId, Validator] = field(init=False, repr=False, compare=False)
    _total_power: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.validators) <= VALIDATORS_MAX:
            raise ConfigError(f"validator count must be 1..{VALIDATORS_MAX}")
        ids = [v.validator_id for v in self.validators]
        if ids != sorted(ids) or len(set(ids)) != len(ids):
            raise ConfigError("validators must be sorted by id and unique")
        if len({v.public_key for v in self.validators}) != len(self.validators):
            raise ConfigError("validator public keys must be unique")
        for v in self.validators:
            if not isinstance(v.voting_power, int) or v.voting_power < 1:
                raise ConfigError(f"validator {v.validator_id}: voting power must be >= 1")
            if len(v.public_key) != PUBLIC_KEY_SIZE:
                raise ConfigError(f"validator {v.validator_id}: public key must be 32 bytes")
        object.__setattr__(self, "_by_id", {v.validator_id: v for v in self.validators})
        object.__setattr__(self, "_total_power", sum(v.voting_power for v in self.validators))
        assert len(self._by_id) == len(self.validators)
        if self.total_power > VOTING_POWER_TOTAL_MAX:
            raise ConfigError(f"total voting power must be <= {VOTING_POWER_TOTAL_MAX}")

    @property
    def total_power(self) -> int:
        return self._total_power

    @property
    def quorum_power(self) -> int:
        """Smallest power that is more than 2/3 of the total."""
        return self.total_power * 2 // 3 + 1

    @property
    def skip_power(self) -> int:
        """Smallest power that is more than 1/3 of the total (f+1 in the paper)."""
        return self.total_power // 3 + 1

    def get(self, validator_id: ValidatorId) -> Validator | None:
        return self._by_id.get(validator_id)

    def power_of(self, validator_id: ValidatorId) -> int:
        v = self.get(validator_id)
        return 0 if v is None else v.voting_power

    def proposer(
        self,
        height: Height,
        round_: Round,
        passed_over: frozenset[ValidatorId] = frozenset(),
    ) -> ValidatorId:
        """Weighted round robin: each validator proposes in proportion to its power,
        spread evenly (smooth weighted round robin over one cycle of total_power slots).

        In the first PASSED_OVER_ROUNDS rounds the validators in `passed_over` are left
        out of the cycle (the others keep their shares); from then on, or if it would
        leave nobody, the plain cycle, so a validator passed over by mistake, or back
        from a pause, still proposes in some round of every height."""
        assert height >= 0
        assert round_ >= 0
        schedule = _schedule(self.validators)
        if passed_over and round_ < PASSED_OVER_ROUNDS:
            active = _active_schedule(schedule, passed_over)
            if active:
                return active[(height + round_) % len(active)]
        return schedule[(height + round_) % len(schedule)]

    def encode(self) -> bytes:
        """The canonical encoding, whose sha256 is `hash()` (consensus/wire.py decodes it):
        what a block header's validator_set_hash commits to."""
        encoded = msgpack.packb(
            [TAG_VALIDATOR_SET]
            + [[v.validator_id, v.public_key, v.voting_power] for v in self.validators],
            use_bin_type=True,
        )
        assert isinstance(encoded, bytes)
        return encoded

    def hash(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()


_schedules: dict[tuple[Validator, ...], tuple[ValidatorId, ...]] = {}


def _schedule(validators: tuple[Validator, ...]) -> tuple[ValidatorId, ...]:
    cached = _schedules.get(validators)
    if cached is not None:
        return cached
    total = sum(v.voting_power for v in validators)
    current = [0] * len(validators)
    order: list[ValidatorId] = []
    for _ in range(total):
        for i, v in enumerate(validators):
            current[i] += v.voting_power
        best = max(range(len(validators)), key=lambda i: (current[i], -i))
        current[best] -= total
        order.append(validators[best].validator_id)
    assert len(order) == total
    assert all(c == 0 for c in current)  # a full cycle returns every counter to zero
    _schedules[validators] = tuple(order)
    return _schedules[validators]


_ACTIVE_SCHEDULES_MAX = 64
_active_schedules: dict[
    tuple[tuple[ValidatorId, ...], frozenset[ValidatorId]], tuple[ValidatorId, ...]
] = {}


def _active_schedule(
    schedule: tuple[ValidatorId, ...], passed_over: frozenset[ValidatorId]
) -> tuple[ValidatorId, ...]:
    """The plain cycle without the passed-over validators (cached: every proposal checks
    its proposer, and the set of passed-over validators rarely changes)."""
    key = (schedule, passed_over)
    cached = _active_schedules.get(key)
    if cached is None:
        if len(_active_schedules) >= _ACTIVE_SCHEDULES_MAX:
            _active_schedules.clear()
        cached = tuple(v for v in schedule if v not in passed_over)
        _active_schedules[key] = cached
    return cached


def passed_over(
    validators: ValidatorSet, carried_signers: Sequence[Collection[ValidatorId]]
) -> frozenset[ValidatorId]:
    """The validators of `validators` that the first rounds of a height pass over: those
    that signed none of the latest PROPOSER_WINDOW_HEIGHTS carried certificates.

    `carried_signers` holds, oldest first, the precommit signers of the certificates
    carried in the blocks settled before the height (block k+1 carries the certificate
    of k, so for height h these are of heights up to h-2). Every node that settled the
    same blocks passes the same sequence, so every node computes the same order. Until
    the window is full (the first heights of a chain) nobody is passed over.

    Why signatures, not failed turns: a failed turn is only known through the order
    that was in force at its height, which depends on the window before it, and so on
    back to genesis; signatures need just the window. A validator that is down signs
    nothing, is passed over after the window, and stays passed over (no timeout every
    window to find out again); once it signs a carried certificate again it is back.
    """
    if len(carried_signers) < PROPOSER_WINDOW_HEIGHTS:
        return frozenset()
    active: set[ValidatorId] = set()
    for signers in list(carried_signers)[-PROPOSER_WINDOW_HEIGHTS:]:
        active.update(signers)
    inactive = frozenset(
        v.validator_id for v in validators.validators if v.validator_id not in active
    )
    if len(inactive) == len(validators.validators):
        return frozenset()  # nobody of this set signed (a whole new set): the plain order
    return inactive


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaConfig:
    """Timeouts of one replica. The timeout of a step in round r is
    base + r * delta, capped at max (the paper's linear growth, bounded)."""

    chain_id: str
    """Network name; inside every signed message so a message never crosses networks."""
    timeout_propose_ms: int = 3000
    """Base wait for a proposal in round 0."""
    timeout_prevote_ms: int = 1000
    """Base wait after seeing 2f+1 prevotes for anything."""
    timeout_precommit_ms: int = 1000
    """Base wait after seeing 2f+1 precommits for anything."""
    timeout_delta_ms: int = 500
    """Added to each timeout per round."""
    rebroadcast_ms: int = 2000
    """Interval at which the replica re-sends its own messages of the current height."""
    timeout_ms_max: int = 60_000
    """Cap on any single timeout, so rounds stay bounded in time."""
    future_messages_max: int = 1000
    """Bound on buffered messages for the next height and for future rounds."""

    @staticmethod
    def default(chain_id: str) -> ReplicaConfig:
        return ReplicaConfig(chain_id=chain_id)

    @staticmethod
    def for_tests(chain_id: str) -> ReplicaConfig:
        return ReplicaConfig(
            chain_id=chain_id,
            timeout_propose_ms=300,
            timeout_prevote_ms=100,
            timeout_precommit_ms=100,
            timeout_delta_ms=50,
            rebroadcast_ms=200,
            timeout_ms_max=5000,
        )

    def validate(self) -> None:
        if not self.chain_id or len(self.chain_id) > 64:
            raise ConfigError("chain_id must be 1..64 characters")
        for name in ("timeout_propose_ms", "timeout_prevote_ms", "timeout_precommit_ms"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.timeout_delta_ms < 0:
            raise ConfigError("timeout_delta_ms must be >= 0")
        if self.timeout_ms_max < max(
            self.timeout_propose_ms, self.timeout_prevote_ms, self.timeout_precommit_ms
        ):
            raise ConfigError(
                f"timeout_ms_max ({self.timeout_ms_max}) must be >= every base timeout"
            )
        if self.rebroadcast_ms < 1:
            raise ConfigError("rebroadcast_ms must be >= 1")
        if self.future_messages_max < 1:
            raise ConfigError("future_messages_max must be >= 1")

    def timeout_ms(self, base_ms: int, round_: Round) -> int:
        assert round_ >= 0
        return min(base_ms + round_ * self.timeout_delta_ms, self.timeout_ms_max)
