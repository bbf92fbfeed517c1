"""`somnet check --home DIR`: verify a node's whole store and list what is wrong.

Exit status 0 when the store is sound, 11 (STORE_CORRUPTED) when anything is wrong,
10 (CONFIG) when node.toml or the genesis file is refused, 15 (STORE_ERROR) when there
is no store to check or it cannot be opened.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from node.check import check_home
from node.config import ConfigError
from node.fatal import FatalReason
from node.store import StoreError

__all__ = ["register"]


def cmd_check(args: argparse.Namespace) -> int:
    try:
        report = check_home(Path(args.home))
    except ConfigError as exc:
        print(f"somnet check: {exc}", file=sys.stderr)
        return int(FatalReason.CONFIG)
    except StoreError as exc:
        print(f"somnet check: {exc}", file=sys.stderr)
        return int(FatalReason.STORE_ERROR)
    if args.json:
        print(report.to_json())
    else:
        for problem in report.problems:
            print(problem.line())
        print(report.summary())
    return 0 if report.ok else int(FatalReason.STORE_CORRUPTED)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = subparsers.add_parser(
        "check",
        help="verify a node's whole store: chain, certificates, replayed ledger state",
        description="Read every record of a stopped node's store (read-only), replay its "
        "chain from genesis and list every difference. Exit status: 0 sound, 11 damaged, "
        "10 bad node.toml or genesis, 15 no store or unreadable.",
    )
    check.add_argument("--home", required=True, help="the node's directory (node.toml)")
    check.add_argument("--json", action="store_true", help="print a JSON document")
    check.set_defaults(handler=cmd_check)
