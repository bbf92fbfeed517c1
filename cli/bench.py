"""`somnet bench ledger`: settle and store pre-signed transfers on one core, and report.
(`somnet bench network` and `somnet bench payout` are in cli/bench_network.py, `somnet
bench catchup` in cli/bench_catchup.py.)

Human-readable progress goes to stderr; the figures go to stdout. With --json the last
line of stdout is one JSON object. Exit 0 on success, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys

from cli.bench_catchup import add_catchup_arguments
from cli.bench_network import add_network_arguments, add_payout_arguments
from node.bench import run_ledger_bench

__all__ = ["register"]

ACCOUNTS_DEFAULT = 100_000
TRANSFERS_DEFAULT = 200_000
BLOCK_SIZE_DEFAULT = 5_000
ACCOUNTS_MAX = 2_000_000  # the genesis limit
TRANSFERS_MAX = 10_000_000
BLOCK_SIZE_MAX = 65_536  # node.block.TXS_MAX
EXIT_OK = 0
EXIT_USAGE = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("bench", help="measure node performance")
    benches = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")
    ledger = benches.add_parser(
        "ledger",
        help="apply and store blocks of signed transfers",
        description="Build a genesis with N accounts and pre-sign M transfers. Block by"
        " block, decode and verify each transfer once (the mempool entry stage), then"
        " validate, apply and store the block (one LMDB write transaction per block) in a"
        " temporary store. Reports each stage per CPU second, transfers applied and stored"
        " per second, end to end, and raw libsodium verifies measured in the same run.",
    )
    ledger.add_argument(
        "--accounts", type=int, default=ACCOUNTS_DEFAULT, help="genesis accounts (100000)"
    )
    ledger.add_argument(
        "--transfers", type=int, default=TRANSFERS_DEFAULT, help="signed transfers (200000)"
    )
    ledger.add_argument(
        "--block-size", type=int, default=BLOCK_SIZE_DEFAULT, help="transfers per block (5000)"
    )
    ledger.add_argument("--json", action="store_true", help="end with one JSON result line")
    ledger.set_defaults(handler=run_ledger)
    add_network_arguments(benches)
    add_payout_arguments(benches)
    add_catchup_arguments(benches)


def _usage_error(args: argparse.Namespace) -> str | None:
    if not 2 <= args.accounts <= ACCOUNTS_MAX:
        return f"--accounts must be in 2..{ACCOUNTS_MAX}"
    if not 1 <= args.transfers <= TRANSFERS_MAX:
        return f"--transfers must be in 1..{TRANSFERS_MAX}"
    if not 1 <= args.block_size <= BLOCK_SIZE_MAX:
        return f"--block-size must be in 1..{BLOCK_SIZE_MAX}"
    return None


def run_ledger(args: argparse.Namespace) -> int:
    error = _usage_error(args)
    if error is not None:
        print(f"somnet bench ledger: {error}", file=sys.stderr)
        return EXIT_USAGE

    def progress(message: str) -> None:
        print(f"bench: {message}", file=sys.stderr, flush=True)

    result = run_ledger_bench(
        accounts=args.accounts,
        transfers=args.transfers,
        block_size=args.block_size,
        progress=progress,
    )
    r = result
    fsync = "per s with fsync"
    lines = (
        f"{r.transfers} transfers, {r.accounts} accounts, {r.blocks} blocks of {r.block_size}",
        _line("raw libsodium verifies", r.raw_verify_per_cpu_second)
        + f"  ({r.raw_verify_per_second:,.0f} per s)",
        _line("entry (mempool): decode + signature check", r.entry_per_cpu_second),
        "settle, reusing the transfers decoded and verified at entry:",
        _line("  decode + validate block", r.validate_per_cpu_second),
        _line("  apply (Ledger.apply_block)", r.apply_per_cpu_second),
        _line("  store (Store.commit_block)", r.store_per_cpu_second)
        + f"  ({r.store_per_second:,.0f} {fsync})",
        _line("  applied and stored (the three above)", r.settle_per_cpu_second)
        + f"  ({r.settle_per_second:,.0f} {fsync})",
        _line("end to end (entry + settle)", r.end_to_end_per_cpu_second)
        + f"  ({r.end_to_end_ratio_to_raw_verify:.2f}x raw verifies)",
        f"{'store size':<46}{r.store_bytes / 1e6:>9,.1f} MB",
    )
    print("\n".join(lines))
    if args.json:
        print(result.to_json())
    return EXIT_OK


def _line(label: str, per_cpu_second: float) -> str:
    """One aligned figure."""
    return f"{label:<46}{per_cpu_second:>9,.0f} per CPU s"
