"""The checkers can fail: with more than f Byzantine validators colluding to fork (they
propose and vote value A to one honest half and value B to the other), the agreement
checker must report a violation on most seeds."""

from __future__ import annotations

import pytest

from consensus.errors import ConfigError
from consensus.sim import SimParams, run_simulation


@pytest.mark.parametrize(
    ("validators", "byzantine", "faults", "forks_min"),
    [
        (4, 2, frozenset(), 18),
        (7, 3, frozenset(), 15),  # with 7, a colluder may not propose in 5 heights
        # Faults get in the colluders' way sometimes, but most seeds still fork.
        (4, 2, frozenset({"delay", "loss", "duplicate", "partition", "crash"}), 11),
    ],
)
def test_colluding_majority_forks_and_is_caught(
    validators: int, byzantine: int, faults: frozenset[str], forks_min: int
) -> None:
    params = SimParams(
        validators=validators, heights=5, byzantine=byzantine, faults=faults, allow_unsafe=True
    )
    results = [run_simulation(seed, params) for seed in range(20)]
    forked = [r.seed for r in results if any(v.startswith("agreement:") for v in r.violations)]
    assert len(forked) >= forks_min, f"agreement violations only on seeds {forked} of 0..19"


def test_more_than_f_byzantine_needs_allow_unsafe() -> None:
    with pytest.raises(ConfigError, match="negative control"):
        SimParams(validators=4, byzantine=2).validate()
    SimParams(validators=4, byzantine=2, allow_unsafe=True).validate()
