"""`@seeds(range)` names the seeds a simulation test runs by default (see conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from cli.sim import replay_command
from consensus.sim import SimParams, SimResult

F = TypeVar("F", bound=Callable[..., object])


def seeds(chosen: Iterable[int]) -> Callable[[F], F]:
    def mark(function: F) -> F:
        function.sim_seeds = tuple(chosen)  # type: ignore[attr-defined]
        return function

    return mark


def explain(result: SimResult, params: SimParams) -> str:
    """A failure message that starts with the seed and says how to replay it."""
    return (
        f"seed {result.seed}: {list(result.violations)}\n"
        f"  replay: pytest tests/sim --seed {result.seed}   or   "
        f"{replay_command(params, result.seed)}\n"
        f"  faults: {list(result.faults)}; Byzantine: {list(result.byzantine)}"
    )
