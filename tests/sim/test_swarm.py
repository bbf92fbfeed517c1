"""Hundreds of seeds, each with its own fault mix and f Byzantine validators: every
safety property holds at every step, and every honest node reaches the target heights
within the bound after the network heals."""

from __future__ import annotations

from consensus.sim import SimParams, run_simulation
from tests.sim.seeds import explain, seeds

FOUR = SimParams(validators=4, heights=5, byzantine=1)
SEVEN = SimParams(validators=7, heights=4, byzantine=2)


def check(seed: int, params: SimParams) -> None:
    result = run_simulation(seed, params)
    assert result.ok, explain(result, params)
    assert result.decided_heights == params.heights, explain(result, params)
    assert result.messages_sent > 0


@seeds(range(0, 220))
def test_four_validators_one_byzantine_mixed_faults(sim_seed: int) -> None:
    check(sim_seed, FOUR)


@seeds(range(10_000, 10_200))
def test_seven_validators_two_byzantine_mixed_faults(sim_seed: int) -> None:
    check(sim_seed, SEVEN)


@seeds(range(20_000, 20_030))
def test_four_validators_all_honest_mixed_faults(sim_seed: int) -> None:
    check(sim_seed, SimParams(validators=4, heights=5))
