"""Shared pytest options: `--seed N` replays one simulation seed."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--seed",
        action="store",
        type=int,
        default=None,
        help="run the simulation tests for this one seed only (replay)",
    )


@pytest.fixture
def replay_seed(request: pytest.FixtureRequest) -> int | None:
    seed = request.config.getoption("--seed")
    assert seed is None or isinstance(seed, int)
    return seed
