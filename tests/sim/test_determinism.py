"""One seed is one run: the whole run is a pure function of (seed, params)."""

from __future__ import annotations

from consensus.sim import SimParams, SimProgress, run_simulation
from tests.sim.seeds import seeds

PARAMS = SimParams(validators=4, heights=4, byzantine=1)


@seeds(range(300, 306))
def test_same_seed_same_result_and_trace(sim_seed: int) -> None:
    first = run_simulation(sim_seed, PARAMS)
    progress: list[SimProgress] = []
    second = run_simulation(sim_seed, PARAMS, observer=progress.append)
    assert first == second, f"seed {sim_seed}: two runs differ"
    assert first.trace_hash == second.trace_hash
    assert first.events > 0


def test_different_seeds_differ() -> None:
    hashes = {run_simulation(seed, PARAMS).trace_hash for seed in range(400, 405)}
    assert len(hashes) == 5


def test_observer_sees_every_honest_decision() -> None:
    params = SimParams(validators=4, heights=3, faults=frozenset())
    progress: list[SimProgress] = []
    result = run_simulation(7, params, observer=progress.append)
    assert result.ok, f"seed 7: {result.violations}"
    assert len(progress) == 4 * 3
    assert {(p.validator_id, p.height) for p in progress} == {
        (f"v{i:02d}", h) for i in range(4) for h in (1, 2, 3)
    }
