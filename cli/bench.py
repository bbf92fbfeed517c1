"""`somnet bench ledger`: settle and store pre-signed transfers on one core, and report.

Human-readable progress goes to stderr; the figures go to stdout. With --json the last
line of stdout is one JSON object. Exit 0 on success, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys

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
        description="Build a genesis with N accounts, pre-sign M transfers, verify them,"
        " then apply and store them in blocks (one LMDB write transaction per block) in a"
        " temporary store. Reports verifies, decodes, validations, applies and stores per"
        " second, in wall and CPU time.",
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
    cpu = "per CPU second"
    print(
        f"{result.transfers} transfers, {result.accounts} accounts, {result.blocks} blocks"
        f" of {result.block_size}\n"
        f"  raw libsodium verifies/s          {result.raw_verify_per_second:>10,.0f}"
        f"  ({result.raw_verify_per_cpu_second:,.0f} {cpu})\n"
        f"  decode+verify (mempool entry)/s   {result.verify_per_second:>10,.0f}\n"
        f"  settling, {cpu}:\n"
        f"    decode each transfer once       {result.decode_per_cpu_second:>10,.0f}\n"
        f"    decode + validate block         {result.validate_per_cpu_second:>10,.0f}\n"
        f"    apply (Ledger.apply_block)      {result.apply_per_cpu_second:>10,.0f}\n"
        f"    store (Store.commit_block)      {result.store_per_cpu_second:>10,.0f}"
        f"  ({result.store_per_second:,.0f} per second with fsync)\n"
        f"  decoded, validated, applied and stored:\n"
        f"    per second (wall)               {result.transfers_per_second:>10,.0f}\n"
        f"    {cpu}                  {result.transfers_per_cpu_second:>10,.0f}"
        f"  ({result.cpu_ratio_to_raw_verify:.2f}x raw verifies)\n"
        f"  store size                        {result.store_bytes / 1e6:>10,.1f} MB"
    )
    if args.json:
        print(result.to_json())
    return EXIT_OK
