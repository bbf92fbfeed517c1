"""`somnet load`: drive a running network with pre-signed transfers and report honestly.

The same load and counting as `somnet bench network` (cli/traffic.py): separate load
processes send pre-signed transfers through the batch route at a fixed rate (open loop),
latency runs from each transfer's due time, and finalized per second counts only the
transfers that became final inside the window after the warm-up, never the drain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from cli.devnet import load_network
from cli.traffic import (
    LoadOptions,
    LoadResult,
    Progress,
    add_rate_option,
    add_window_options,
    banks_of,
    run_load,
)
from node.genesis import load_genesis

__all__ = ["print_second", "register", "summary"]


def print_second(progress: Progress) -> None:
    print(progress.line(), flush=True)


def summary(result: LoadResult, rate: float) -> dict[str, Any]:
    """The figures of a run, the offered rate first."""
    return {"rate_offered_per_s": rate, **result.window_figures()}


def cmd_load(args: argparse.Namespace) -> int:
    directory = Path(args.home)
    entries = load_network(directory)
    banks = banks_of(entries)
    if not banks:
        print(f"somnet load: {directory} has no bank node", file=sys.stderr)
        return 2
    genesis = load_genesis(directory / "genesis.json")
    options = LoadOptions(
        genesis_path=directory / "genesis.json",
        rate_per_s=args.rate,
        warmup_s=args.warmup,
        duration_s=args.duration,
        targets=tuple(a.account_id for a in genesis.accounts),
        clients_per_bank=args.clients,
        drain_s=args.drain,
    )
    on_second = print_second if not args.json else _to_stderr
    result = asyncio.run(run_load(banks, options, on_second=on_second))
    figures = summary(result, args.rate)
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    else:
        for key, value in figures.items():
            print(f"{key:20} {value}")
    return 0 if figures["refused"] == 0 and figures["not_final"] == 0 else 1


def _to_stderr(progress: Progress) -> None:
    print(progress.line(), file=sys.stderr, flush=True)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = subparsers.add_parser(
        "load",
        help="send pre-signed transfers to a running network",
        description=__doc__.split("\n\n")[1],
    )
    load.add_argument("--home", default="devnet", help="the network directory")
    add_rate_option(load, rate_per_s=100.0)
    add_window_options(load, duration_s=30.0, warmup_s=0.0)
    load.add_argument("--json", action="store_true")
    load.set_defaults(handler=cmd_load)
