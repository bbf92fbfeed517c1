"""One seed is one run: the whole run is a pure function of (seed, params)."""

from __future__ import annotations

import pytest

from consensus import sim, sim_faults
from consensus.sim import SimParams, SimProgress, Simulation, run_simulation, scenario_fingerprint
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


UNSAFE = SimParams(validators=4, heights=2, byzantine=2, allow_unsafe=True)


def test_scenario_fingerprint_is_a_pure_function_of_seed_and_params() -> None:
    assert scenario_fingerprint(11, PARAMS) == scenario_fingerprint(11, PARAMS)
    assert scenario_fingerprint(11, PARAMS) != scenario_fingerprint(12, PARAMS)
    assert scenario_fingerprint(11, PARAMS) != scenario_fingerprint(11, UNSAFE)
    # Computing it draws nothing from a simulation's own streams: the run is unchanged.
    simulation = Simulation(11, PARAMS)
    simulation.scenario()
    assert simulation.run() == run_simulation(11, PARAMS)


def test_scenario_names_what_the_seed_drew() -> None:
    simulation = Simulation(5, UNSAFE)
    lines = dict(line.split(" ", 1) for line in simulation.scenario())
    assert {"params", "config", "delays", "keys", "byzantine", "plan", "network", "app"} <= set(
        lines
    )
    assert "coalition [((" in lines["byzantine"]  # two Byzantine of four collude
    assert str(simulation.plan.heal_ms) in lines["plan"]


@pytest.mark.parametrize(
    "change",
    ["network draws", "fault plan draws", "simulator delays"],
)
def test_scenario_fingerprint_sees_a_change_in_drawing(
    monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """What a pinned regression seed relies on: the drawing changes, the fingerprint too."""
    seed = 3  # draws delays, partitions and crashes with all fault kinds
    params = SimParams(validators=4, heights=5)
    before = scenario_fingerprint(seed, params)
    if change == "network draws":
        delay_ms = sim_faults.FaultPlan.delay_ms
        monkeypatch.setattr(
            sim_faults.FaultPlan, "delay_ms", lambda plan, rng, now: delay_ms(plan, rng, now) + 1
        )
    elif change == "fault plan draws":
        monkeypatch.setattr(sim_faults, "LOSS_PROBABILITY_MAX", 0.25)  # seed 3 draws loss
    else:
        monkeypatch.setattr(sim, "APP_DELAY_MS", sim.APP_DELAY_MS + 1)
    assert scenario_fingerprint(seed, params) != before
