"""Shared pytest options and marks.

`--seed N` replays one simulation seed. Tests marked `network` start networks of real node
processes; they run one at a time (see `pytest_collection_modifyitems`).
"""

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


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups, in the same hook
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put every `network` test in one xdist group, so that `pytest -n 2 --dist loadgroup`
    runs them one after another on one worker while the other runs unit and sim tests.

    Two networks of six node processes at once on a two-core machine starve each other's
    timers; the tests would then measure the machine, not the nodes.
    """
    for item in items:
        if item.get_closest_marker("network") is not None:
            item.add_marker(pytest.mark.xdist_group("network"))
