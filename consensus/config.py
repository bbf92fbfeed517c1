"""Static configuration of a replica: the validator set and the timeouts.

The validator set is ordered by validator id so that every node derives the same
proposer schedule and the same set hash from the same genesis.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import msgpack

from consensus.errors import ConfigError
from consensus.ids import Height, Round, ValidatorId

__all__ = ["ReplicaConfig", "Validator", "ValidatorSet"]

PUBLIC_KEY_SIZE = 32
VALIDATORS_MAX = 100
VOTING_POWER_TOTAL_MAX = 10_000  # bounds the precomputed proposer schedule


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

    def proposer(self, height: Height, round_: Round) -> ValidatorId:
        """Weighted round robin: each validator proposes in proportion to its power,
        spread evenly (smooth weighted round robin over one cycle of total_power slots)."""
        assert height >= 0
        assert round_ >= 0
        schedule = _schedule(self.validators)
        return schedule[(height + round_) % len(schedule)]

    def hash(self) -> bytes:
        encoded = msgpack.packb(
            [b"somnet/validator-set/v1"]
            + [[v.validator_id, v.public_key, v.voting_power] for v in self.validators],
            use_bin_type=True,
        )
        return hashlib.sha256(encoded).digest()


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
