"""Validator-set changes decided at height h and in force at h+2 (gov_plan, issue 13): a
spare node joins, a genesis validator leaves, voting powers change, while faults delay
and lose messages and one validator is Byzantine. Every safety property holds, every
honest node (members and followers alike) reaches the target, and each node signs only
at heights whose set it is in."""

from __future__ import annotations

import pytest

from consensus.errors import ConfigError
from consensus.messages import Height, ValidatorId
from consensus.sim import (
    SimParams,
    Simulation,
    ValidatorChange,
    rotation_at,
    rotation_changes,
)
from tests.sim.seeds import explain, seeds

ROTATE_FOUR = SimParams(
    validators=4,
    heights=7,
    byzantine=1,
    spares=1,
    validator_changes=rotation_changes(4, 2),  # v04 joins at 4, v00 leaves at 5
)
ROTATE_SEVEN = SimParams(
    validators=7,
    heights=5,
    byzantine=2,
    spares=1,
    validator_changes=rotation_changes(7, 1),  # v07 joins at 3, v00 leaves at 4
)
SWAP_AND_REWEIGH = SimParams(
    validators=4,
    heights=7,
    spares=2,
    validator_changes=(
        # Half the set replaced at once: v00 and v01 out, v04 and v05 in, from height 3.
        ValidatorChange(decided_at=1, members=((2, 1), (3, 1), (4, 1), (5, 1))),
        # v00 back with twice the power, from height 5.
        ValidatorChange(decided_at=3, members=((0, 2), (2, 1), (3, 1), (4, 1), (5, 1))),
    ),
)


def run_checked(seed: int, params: SimParams) -> Simulation:
    simulation = Simulation(seed, params)
    result = simulation.run()
    assert result.ok, explain(result, params)
    assert result.decided_heights == params.heights, explain(result, params)
    return simulation


def signed_heights(simulation: Simulation, validator: str) -> set[int]:
    return {h for (node, h, _, _) in simulation.checker.signed if node == validator}


@seeds(range(0, 120))
def test_a_validator_joins_and_one_leaves_with_a_byzantine_and_late_messages(
    sim_seed: int,
) -> None:
    simulation = run_checked(sim_seed, ROTATE_FOUR)
    joiner, leaver = ValidatorId("v04"), ValidatorId("v00")
    # The checker flags any signature outside a height's set; here is the positive side.
    assert all(h >= 4 for h in signed_heights(simulation, joiner))
    assert all(h <= 4 for h in signed_heights(simulation, leaver))


@seeds(range(30_000, 30_030))
def test_seven_validators_two_byzantine_rotate(sim_seed: int) -> None:
    run_checked(sim_seed, ROTATE_SEVEN)


@seeds(range(31_000, 31_060))
def test_half_the_set_swapped_then_a_validator_returns_with_more_power(sim_seed: int) -> None:
    simulation = run_checked(sim_seed, SWAP_AND_REWEIGH)
    for gone in ("v00", "v01"):
        assert not {3, 4} & signed_heights(simulation, gone)
    assert all(h >= 3 for h in signed_heights(simulation, "v05"))


def test_the_joiner_votes_from_its_first_height() -> None:
    """Without faults the joiner signs at its first height (the run stops as soon as
    every honest node decided the last height, so a member may not have signed there)."""
    params = SimParams(
        validators=4,
        heights=6,
        spares=1,
        faults=frozenset(),
        validator_changes=rotation_changes(4, 2),
    )
    simulation = run_checked(7, params)
    assert {4, 5} <= signed_heights(simulation, "v04")
    assert {1, 2, 3, 4} <= signed_heights(simulation, "v00")
    assert simulation.validators_at(Height(3)).get(ValidatorId("v04")) is None
    assert simulation.validators_at(Height(4)).get(ValidatorId("v04")) is not None
    assert simulation.validators_at(Height(5)).get(ValidatorId("v00")) is None


def test_a_change_that_gives_the_byzantine_a_third_needs_allow_unsafe() -> None:
    # Down to 3 validators with one Byzantine among them: f = 0.
    shrink = (ValidatorChange(decided_at=1, members=((0, 1), (1, 1), (2, 1))),)
    with pytest.raises(ConfigError, match="negative control"):
        SimParams(validators=4, byzantine=1, validator_changes=shrink).validate()
    SimParams(validators=4, byzantine=1, validator_changes=shrink, allow_unsafe=True).validate()


@pytest.mark.parametrize(
    "changes",
    [
        (ValidatorChange(decided_at=0, members=((0, 1),)),),
        (ValidatorChange(decided_at=1, members=()),),
        (ValidatorChange(decided_at=1, members=((0, 1), (0, 1))),),
        (ValidatorChange(decided_at=1, members=((9, 1),)),),
        (ValidatorChange(decided_at=1, members=((0, 0),)),),
        (
            ValidatorChange(decided_at=2, members=((0, 1),)),
            ValidatorChange(decided_at=1, members=((1, 1),)),
        ),
    ],
)
def test_malformed_schedules_are_refused(changes: tuple[ValidatorChange, ...]) -> None:
    with pytest.raises(ConfigError):
        SimParams(validators=4, validator_changes=changes).validate()


def test_rotation_is_recognised_for_the_replay_command() -> None:
    assert rotation_at(ROTATE_FOUR) == 2
    assert rotation_at(SWAP_AND_REWEIGH) is None
    assert rotation_at(SimParams()) is None
