"""Seed parametrisation of the simulation tests.

A test that takes `sim_seed` runs once per seed of its `@seeds(...)` range, or once for
the seed given with `pytest tests/sim --seed N` (an exact replay of that one run).
"""

from __future__ import annotations

import pytest


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sim_seed" not in metafunc.fixturenames:
        return
    replay = metafunc.config.getoption("--seed")
    if replay is not None:
        chosen = [replay]
    else:
        chosen = list(getattr(metafunc.function, "sim_seeds", ()))
    assert chosen, f"{metafunc.function.__name__} takes sim_seed but has no @seeds(...)"
    metafunc.parametrize("sim_seed", chosen, ids=[f"seed{s}" for s in chosen])
