"""Shared pytest options and marks.

`--seed N` replays one simulation seed. Tests marked `network` start networks of real node
processes; they run one at a time (see `pytest_collection_modifyitems`).
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest
from hypothesis import settings

# Every child process (nodes, CLI commands) dumps each thread's stack on SIGABRT, which
# tests/integration/waiting.py stop_process sends to a child that would not stop.
os.environ.setdefault("PYTHONFAULTHANDLER", "1")

# Property tests draw the same examples on every run, so `make test` passes or fails the
# same way each time: a property test never fails by luck. Explore new examples on demand
# with `pytest --hypothesis-profile=explore`; a failure found there becomes an @example.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("deterministic")


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


UNGROUPED = pytest.StashKey[bool]()
"""Set on a `network` test that --dist loadgroup failed to put in its group."""


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Generator[None, None, None]:
    """Put every `network` test in one xdist group, so that `pytest -n 2 --dist loadgroup`
    runs them one after another on one worker while the other runs unit and sim tests.

    Two networks of six node processes at once on a two-core machine starve each other's
    timers; the tests would then measure the machine, not the nodes. The marks go on
    before any plain implementation of this hook runs, xdist's among them, which turns
    them into the "@network" suffix its scheduler groups by.
    """
    for item in items:
        if item.get_closest_marker("network") is not None:
            item.add_marker(pytest.mark.xdist_group("network"))
    yield
    # Grouping fails silently when xdist cannot rename the items (pytest-xdist#1386: with
    # pytest 9.2 and xdist 3.8 the suffix is lost), so check that it took effect, and if
    # not, fail those tests with the reason rather than run them two at a time.
    if getattr(config.option, "loadgroup", False):
        for item in items:
            if item.get_closest_marker("network") and not item.nodeid.endswith("@network"):
                item.stash[UNGROUPED] = True


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.stash.get(UNGROUPED, False):
        pytest.fail(
            "--dist loadgroup did not put this network test in its xdist group: this"
            " pytest-xdist cannot group under this pytest (pytest-xdist#1386), so networks"
            " would run two at a time; see the pytest pin in pyproject.toml",
            pytrace=False,
        )
