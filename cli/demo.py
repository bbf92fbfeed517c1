"""`somnet demo`: a short, readable tour of the consensus core under faults.

Until the networked node exists, the demo runs the simulator: 4 validators, one of them
Byzantine, with network faults and crashes drawn per seed, and narrates each run.
"""

from __future__ import annotations

import argparse
import time

from cli.sim import replay_command
from consensus.messages import Height, ValidatorId
from consensus.sim import SimParams, SimProgress, Simulation

__all__ = ["register"]

DEMO_SEEDS = (3, 16, 37)  # an equivocating, a silent and a garbage-spewing Byzantine


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo", help="watch 4 simulated validators reach consensus under faults"
    )
    parser.add_argument("--heights", type=int, default=5, help="heights per run (default 5)")
    parser.set_defaults(handler=run)


class _Narrator:
    """Prints a line when every honest validator has decided a height."""

    def __init__(self, seed: int, honest_count: int) -> None:
        self.seed = seed
        self.honest_count = honest_count
        self.deciders: dict[Height, set[ValidatorId]] = {}

    def __call__(self, progress: SimProgress) -> None:
        deciders = self.deciders.setdefault(progress.height, set())
        deciders.add(progress.validator_id)
        if len(deciders) == self.honest_count:
            print(
                f"  t={progress.time_ms / 1000:7.3f}s  height {progress.height} final on all"
                f" {self.honest_count} honest validators (block {progress.value_id.hex()[:8]},"
                f" round {progress.round})",
                flush=True,
            )


def run(args: argparse.Namespace) -> int:
    params = SimParams(validators=4, heights=args.heights, byzantine=1)
    print(
        "somnet demo: 4 validators in one process on a virtual clock, 1 Byzantine,"
        " real Ed25519 signatures; faults drawn per seed.\n"
    )
    started = time.monotonic()
    failures = 0
    for seed in DEMO_SEEDS:
        narrator = _Narrator(seed, params.validators - params.byzantine)
        simulation = Simulation(seed, params, observer=narrator)
        print(f"seed {seed}:")
        for line in simulation.plan.describe():
            print(f"  fault: {line}")
        result = simulation.run()
        for byzantine in result.byzantine:
            print(f"  Byzantine {byzantine}")
        print(
            f"  -> {result.decided_heights} heights decided by every honest validator in"
            f" {result.virtual_time_ms / 1000:.2f} virtual s; {result.messages_sent} messages,"
            f" {result.messages_dropped} dropped, {result.messages_rejected} garbage rejected,"
            f" {result.evidence_reported} equivocations reported"
        )
        if result.ok:
            print("  safety and liveness checks: passed\n")
        else:
            failures += 1
            for violation in result.violations:
                print(f"  VIOLATION {violation}")
            print(f"  replay: {replay_command(params, seed)}\n")
    print(
        f"{len(DEMO_SEEDS)} runs, {failures} with violations,"
        f" {time.monotonic() - started:.1f} s wall time."
    )
    return 0 if failures == 0 else 1
