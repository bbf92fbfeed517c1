"""`somnet sim`: run the consensus simulator over a range of seeds.

Each failing seed gets one line with the exact command that replays it; a summary follows.
With --json the last line of stdout is one JSON object for machines. Exit 0 iff no seed
found a violation, 2 on bad arguments.

`somnet sim --scale 4,7,16,31,64,100` prints instead the cost table: one fault-free run
per validator count, with messages, signature checks and signatures per height (counted
by the simulator, so exact and the same on every machine) and decided heights per
CPU-second (measured: the only figure that depends on the machine).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import multiprocessing
import resource
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from consensus.errors import ConfigError
from consensus.sim import (
    BYZANTINE_BEHAVIOURS,
    FAULT_KINDS,
    SIGNATURE_SCHEMES,
    VALIDATORS_MAX,
    SimParams,
    SimResult,
    rotation_at,
    rotation_changes,
    run_simulation,
)

__all__ = ["ScaleRow", "params_from_args", "register", "replay_command", "scale_row"]

SEEDS_MAX = 1_000_000
JOBS_MAX = 64
EXIT_OK = 0
EXIT_VIOLATIONS = 1
EXIT_USAGE = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="run the seeded consensus simulator",
        description="Run N validators in one process on a virtual clock, one run per seed,"
        " with faults drawn per seed, and check agreement, validity, no double-sign and"
        " liveness after the network heals.",
    )
    parser.add_argument("--validators", type=int, default=4, help="validator count (default 4)")
    parser.add_argument("--seeds", type=int, default=10, help="number of seeds (default 10)")
    parser.add_argument("--first-seed", type=int, default=1, help="first seed (default 1)")
    parser.add_argument("--heights", type=int, default=5, help="heights per run (default 5)")
    parser.add_argument(
        "--byzantine", type=int, default=0, help="Byzantine validators (default 0, at most f)"
    )
    parser.add_argument(
        "--faults",
        default="all",
        help=f"fault kinds a seed may draw: all, none, or a comma list of {','.join(FAULT_KINDS)}",
    )
    parser.add_argument(
        "--behaviours",
        default="all",
        help="Byzantine behaviours a seed may draw: all or a comma list of"
        f" {','.join(BYZANTINE_BEHAVIOURS)}",
    )
    parser.add_argument(
        "--allow-unsafe",
        action="store_true",
        help="allow more than f Byzantine validators (a negative control: they fork)",
    )
    parser.add_argument(
        "--change-validators-at",
        type=int,
        default=None,
        metavar="H",
        help="change the validator set: one extra node joins by a change decided at H (in"
        " force at H+2) and the first validator leaves by one decided at H+1",
    )
    parser.add_argument(
        "--signatures",
        choices=SIGNATURE_SCHEMES,
        default="ed25519",
        help="signature scheme: ed25519 (default, as a node signs) or keyed-hash, a keyed"
        " BLAKE2b for SIMULATION ONLY (never used by a node; it is not a signature: anyone"
        " with the run's key table forges); it removes the signing and checking cost, about"
        " half of a seed's CPU time at 4 validators and two thirds at 100",
    )
    parser.add_argument(
        "--scale",
        default=None,
        metavar="N,N,...",
        help="print the cost table instead of checking seeds: for each validator count"
        " (e.g. 4,7,16,31,64,100) one fault-free run of seed --first-seed for --heights"
        " heights, reporting messages sent and delivered, signature checks and signatures"
        " made per height (counted) and decided heights per CPU-second (measured);"
        " --seeds, --faults and --behaviours do not apply, --byzantine is refused",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="worker processes for the seeds (default 1); the output is the same, in seed"
        " order, and the CPU seconds reported include the workers'",
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON summary line")
    parser.set_defaults(handler=run)


def _kinds(text: str, known: tuple[str, ...], what: str) -> frozenset[str]:
    if text == "all":
        return frozenset(known)
    if text in ("", "none"):
        return frozenset()
    kinds = frozenset(part.strip() for part in text.split(","))
    unknown = sorted(kinds - set(known))
    if unknown:
        raise ConfigError(f"unknown {what} {','.join(unknown)}; known: {','.join(known)}")
    return kinds


def params_from_args(args: argparse.Namespace) -> SimParams:
    """Build and validate the run parameters. Raises ConfigError with a plain message."""
    if not 1 <= args.seeds <= SEEDS_MAX:
        raise ConfigError(f"--seeds must be 1..{SEEDS_MAX}")
    if args.first_seed < 0:
        raise ConfigError("--first-seed must be >= 0")
    params = SimParams(
        validators=args.validators,
        heights=args.heights,
        byzantine=args.byzantine,
        faults=_kinds(args.faults, FAULT_KINDS, "fault kinds"),
        behaviours=_kinds(args.behaviours, BYZANTINE_BEHAVIOURS, "Byzantine behaviours"),
        allow_unsafe=args.allow_unsafe,
        signatures=args.signatures,
    )
    if args.change_validators_at is not None:
        if args.change_validators_at < 1:
            raise ConfigError("--change-validators-at must be >= 1")
        params = dataclasses.replace(
            params,
            spares=1,
            validator_changes=rotation_changes(args.validators, args.change_validators_at),
        )
    try:
        params.validate()
    except ConfigError as exc:
        if args.byzantine > params.fault_tolerance and args.byzantine < args.validators:
            raise ConfigError(
                f"--byzantine {args.byzantine} exceeds f={params.fault_tolerance} for"
                f" {args.validators} validators; add --allow-unsafe to run it as a negative"
                " control (the checkers must then report violations)"
            ) from exc
        raise
    return params


def _kinds_text(kinds: frozenset[str], known: tuple[str, ...]) -> str:
    if kinds == frozenset(known):
        return "all"
    return ",".join(k for k in known if k in kinds) or "none"


def replay_command(params: SimParams, seed: int) -> str:
    """The exact command that replays one seed with these parameters."""
    parts = [
        "somnet sim",
        f"--validators {params.validators}",
        "--seeds 1",
        f"--first-seed {seed}",
        f"--heights {params.heights}",
        f"--byzantine {params.byzantine}",
        f"--faults {_kinds_text(params.faults, FAULT_KINDS)}",
    ]
    if params.behaviours != frozenset(BYZANTINE_BEHAVIOURS):
        parts.append(f"--behaviours {_kinds_text(params.behaviours, BYZANTINE_BEHAVIOURS)}")
    if params.allow_unsafe:
        parts.append("--allow-unsafe")
    if params.signatures != "ed25519":
        parts.append(f"--signatures {params.signatures}")
    at = rotation_at(params)
    if at is not None:
        parts.append(f"--change-validators-at {at}")
    elif params.validator_changes or params.spares:
        # Only the rotation has a flag; other schedules replay with `pytest --seed N`.
        parts.append("(with a validator-change schedule the command line cannot express)")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    if args.scale is not None:
        return run_scale(args)
    try:
        params = params_from_args(args)
    except ConfigError as exc:
        print(f"somnet sim: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not 1 <= args.jobs <= JOBS_MAX:
        print(f"somnet sim: error: --jobs must be 1..{JOBS_MAX}", file=sys.stderr)
        return EXIT_USAGE
    wall_start, cpu_start = time.monotonic(), _cpu_seconds_with_children()
    results: list[SimResult] = []
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    with contextlib.ExitStack() as stack:
        if args.jobs == 1:
            ran: Iterator[SimResult] = (run_simulation(seed, params) for seed in seeds)
        else:
            # Seeds are independent runs; results come back in seed order, so the output
            # is the one a single process prints. Forked workers start cheaply from this
            # process, which runs no thread or event loop that a fork could break.
            pool = stack.enter_context(
                ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("fork"))
            )
            chunk = max(1, min(64, len(seeds) // (8 * args.jobs)))
            ran = pool.map(functools.partial(run_simulation, params=params), seeds, chunksize=chunk)
        for result in ran:
            results.append(result)
            if not result.ok:
                print(f"FAIL seed={result.seed}: {result.violations[0]}")
                print(f"  replay: {replay_command(params, result.seed)}")
    wall_seconds = time.monotonic() - wall_start
    cpu_seconds = _cpu_seconds_with_children() - cpu_start  # workers are reaped by now
    _print_summary(params, results, wall_seconds, cpu_seconds, as_json=args.json)
    return EXIT_OK if all(r.ok for r in results) else EXIT_VIOLATIONS


def _cpu_seconds_with_children() -> float:
    """CPU seconds of this process and of its reaped children (the --jobs workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _print_summary(
    params: SimParams,
    results: list[SimResult],
    wall_seconds: float,
    cpu_seconds: float,
    *,
    as_json: bool,
) -> None:
    failed = [r.seed for r in results if not r.ok]
    violations = sum(len(r.violations) for r in results)
    decided = sum(r.decided_heights for r in results)
    rate = decided / cpu_seconds if cpu_seconds > 0 else 0.0
    print(
        f"{len(results)} seeds, {params.validators} validators ({params.byzantine} Byzantine),"
        f" faults {_kinds_text(params.faults, FAULT_KINDS)}: {len(failed)} failed,"
        f" {violations} violations"
    )
    print(
        f"decided {decided} heights in {sum(r.virtual_time_ms for r in results) / 1000:.1f}"
        f" virtual s, {sum(r.messages_sent for r in results)} messages;"
        f" wall {wall_seconds:.2f} s, {rate:.1f} heights per CPU-second"
    )
    if as_json:
        summary = {
            "seeds": len(results),
            "first_seed": results[0].seed if results else None,
            "validators": params.validators,
            "byzantine": params.byzantine,
            "violations": violations,
            "failed_seeds": failed,
            "decided_heights": decided,
            "virtual_ms": sum(r.virtual_time_ms for r in results),
            "messages_sent": sum(r.messages_sent for r in results),
            "signatures": params.signatures,
            "signatures_made": sum(r.signatures_made for r in results),
            "signature_checks": sum(r.signature_checks for r in results),
            "wall_seconds": round(wall_seconds, 3),
            "cpu_seconds": round(cpu_seconds, 3),
            "heights_per_cpu_second": round(rate, 2),
        }
        print(json.dumps(summary, sort_keys=True))


# ---------------------------------------------------------------------------------------
# The cost table (--scale).


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleRow:
    """One validator count's fault-free run. Per-height figures divide by the heights
    every honest node decided; all but `cpu_seconds` (and the rate from it) are counts,
    the same on every machine."""

    validators: int
    heights: int
    messages_sent_per_height: float
    messages_delivered_per_height: float
    signature_checks_per_height: float
    signatures_made_per_height: float
    cpu_seconds: float
    heights_per_cpu_second: float
    violations: tuple[str, ...]


def _scale_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError as exc:
        raise ConfigError(f"--scale takes a comma list of validator counts, not {text!r}") from exc
    if not counts or len(set(counts)) != len(counts):
        raise ConfigError("--scale takes distinct validator counts")
    if not all(1 <= n <= VALIDATORS_MAX for n in counts):
        raise ConfigError(f"--scale: validator counts must be 1..{VALIDATORS_MAX}")
    return counts


def scale_row(seed: int, params: SimParams) -> ScaleRow:
    """Run one seed under `params` and measure it: the process CPU time of the run (no
    wall clock: the machine is shared), everything else counted by the simulator."""
    cpu_start = time.process_time()
    result = run_simulation(seed, params)
    cpu_seconds = time.process_time() - cpu_start
    heights = result.decided_heights
    per = 1 / heights if heights else 0.0
    return ScaleRow(
        validators=params.validators,
        heights=heights,
        messages_sent_per_height=round(result.messages_sent * per, 1),
        messages_delivered_per_height=round(result.messages_delivered * per, 1),
        signature_checks_per_height=round(result.signature_checks * per, 1),
        signatures_made_per_height=round(result.signatures_made * per, 1),
        cpu_seconds=round(cpu_seconds, 3),
        heights_per_cpu_second=round(heights / cpu_seconds, 2) if cpu_seconds > 0 else 0.0,
        violations=result.violations,
    )


SCALE_HEADER = (
    "validators",
    "msgs sent",
    "msgs delivered",
    "sig checks",
    "sigs made",
    "heights/CPU-s",
    "CPU s",
)


def _scale_params(args: argparse.Namespace) -> list[SimParams]:
    """One fault-free, all-honest run per count. Raises ConfigError with a plain message."""
    counts = _scale_counts(args.scale)
    if args.byzantine or args.change_validators_at is not None:
        raise ConfigError(
            "--scale runs fault-free honest sets: drop --byzantine and --change-validators-at"
        )
    if args.first_seed < 0:
        raise ConfigError("--first-seed must be >= 0")
    runs = [
        SimParams(
            validators=n, heights=args.heights, faults=frozenset(), signatures=args.signatures
        )
        for n in counts
    ]
    for params in runs:
        params.validate()
    return runs


def _scale_line(row: ScaleRow) -> str:
    cells = (
        row.validators,
        row.messages_sent_per_height,
        row.messages_delivered_per_height,
        row.signature_checks_per_height,
        row.signatures_made_per_height,
        row.heights_per_cpu_second,
        row.cpu_seconds,
    )
    assert len(cells) == len(SCALE_HEADER)
    return " | ".join(
        f"{cell:>{len(title)}}" for cell, title in zip(cells, SCALE_HEADER, strict=True)
    )


def run_scale(args: argparse.Namespace) -> int:
    """`somnet sim --scale`: the cost table, one fault-free run per validator count."""
    try:
        runs = _scale_params(args)
    except ConfigError as exc:
        print(f"somnet sim: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"cost per height: seed {args.first_seed}, {args.heights} heights, no faults,"
        f" signatures {args.signatures}"
    )
    print(" | ".join(SCALE_HEADER))
    rows: list[ScaleRow] = []
    for params in runs:
        row = scale_row(args.first_seed, params)
        rows.append(row)
        print(_scale_line(row))
        for violation in row.violations:
            print(f"FAIL validators={row.validators}: {violation}")
    if args.json:
        summary = {
            "seed": args.first_seed,
            "heights": args.heights,
            "signatures": args.signatures,
            "rows": [
                dataclasses.asdict(row) | {"violations": list(row.violations)} for row in rows
            ],
        }
        print(json.dumps(summary, sort_keys=True))
    return EXIT_OK if all(not row.violations for row in rows) else EXIT_VIOLATIONS
