"""Validator sets and replica configs: impossible ones are refused with a plain message;
proposers rotate in proportion to voting power."""

from __future__ import annotations

import collections
import dataclasses

import pytest

from consensus.config import ReplicaConfig, Validator, ValidatorSet
from consensus.errors import ConfigError
from consensus.messages import Height, Round, ValidatorId


def validator(name: str, power: int = 1, key: bytes | None = None) -> Validator:
    return Validator(
        validator_id=ValidatorId(name),
        public_key=key if key is not None else name.encode().ljust(32, b"\0"),
        voting_power=power,
    )


@pytest.mark.parametrize(
    ("validators", "message"),
    [
        ((), "validator count"),
        ((validator("b"), validator("a")), "sorted by id"),
        ((validator("a"), validator("a", key=b"x" * 32)), "sorted by id and unique"),
        ((validator("a"), validator("b", key=b"a".ljust(32, b"\0"))), "keys must be unique"),
        ((validator("a", power=0),), "voting power"),
        ((validator("a", key=b"short"),), "32 bytes"),
        ((validator("a", power=10_001),), "total voting power"),
    ],
)
def test_impossible_validator_sets_are_refused(
    validators: tuple[Validator, ...], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        ValidatorSet(validators)


def test_quorum_and_skip_power_follow_3f_plus_1() -> None:
    four = ValidatorSet(tuple(validator(n) for n in "abcd"))
    assert (four.quorum_power, four.skip_power) == (3, 2)
    seven = ValidatorSet(tuple(validator(n) for n in "abcdefg"))
    assert (seven.quorum_power, seven.skip_power) == (5, 3)


def test_proposers_rotate_in_proportion_to_power() -> None:
    validators = ValidatorSet((validator("a", 3), validator("b", 1), validator("c", 2)))
    turns = collections.Counter(validators.proposer(Height(h), Round(0)) for h in range(600))
    assert turns == {"a": 300, "b": 100, "c": 200}
    # Smooth: the heaviest never proposes more than twice in a row within a cycle.
    cycle = [validators.proposer(Height(h), Round(0)) for h in range(6)]
    assert cycle.count("a") == 3 and "a,a,a" not in ",".join(cycle)
    assert validators.proposer(Height(5), Round(1)) == validators.proposer(Height(6), Round(0))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"chain_id": ""}, "chain_id"),
        ({"timeout_propose_ms": 0}, "timeout_propose_ms"),
        ({"timeout_delta_ms": -1}, "timeout_delta_ms"),
        ({"timeout_ms_max": 10}, "timeout_ms_max"),
        ({"rebroadcast_ms": 0}, "rebroadcast_ms"),
        ({"future_messages_max": 0}, "future_messages_max"),
    ],
)
def test_impossible_replica_configs_are_refused(change: dict[str, object], message: str) -> None:
    config = dataclasses.replace(ReplicaConfig.default("somnet-test"), **change)
    with pytest.raises(ConfigError, match=message):
        config.validate()


def test_presets_are_valid_and_timeouts_grow_linearly_then_cap() -> None:
    for config in (ReplicaConfig.default("x"), ReplicaConfig.for_tests("x")):
        config.validate()
    config = ReplicaConfig.for_tests("x")
    assert config.timeout_ms(300, Round(0)) == 300
    assert config.timeout_ms(300, Round(2)) == 300 + 2 * config.timeout_delta_ms
    assert config.timeout_ms(300, Round(10_000)) == config.timeout_ms_max
