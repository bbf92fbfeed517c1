"""Liveness after heal: once partitions and loss end, every honest node decides the target
heights within the bound; and the liveness checker does fire when they cannot."""

from __future__ import annotations

from consensus.sim import SimParams, Simulation
from tests.sim.seeds import explain, seeds

PARTITIONS = SimParams(validators=4, heights=5, faults=frozenset({"partition", "loss"}))


@seeds(range(700, 730))
def test_progress_resumes_after_partitions_heal(sim_seed: int) -> None:
    simulation = Simulation(sim_seed, PARTITIONS)
    result = simulation.run()
    assert result.ok, explain(result, PARTITIONS)
    assert result.decided_heights == PARTITIONS.heights
    assert result.virtual_time_ms <= result.heal_ms + PARTITIONS.liveness_ms_max


def test_liveness_checker_fires_when_the_target_is_out_of_reach() -> None:
    # 1000 heights cannot be decided in one virtual second after the heal.
    params = SimParams(
        validators=4, heights=1000, faults=frozenset({"delay"}), liveness_ms_max=1000
    )
    result = Simulation(1, params).run()
    assert [v.split(":")[0] for v in result.violations] == ["liveness"], result.violations
    assert 0 < result.decided_heights < 1000
