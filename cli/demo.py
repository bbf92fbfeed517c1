"""`somnet demo`: a local network of real node processes with traffic between the banks.

Initialises DIR (default ./devnet) if needed, starts 4 validators and 2 bank nodes as
child processes, then sends signed transfers between the banks and prints, every second,
the height, the finalized transfers and submit-to-final latency, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from cli.devnet import init_network, load_network, start_nodes, stop_nodes, wait_ready
from cli.load import print_second, summary
from cli.traffic import TrafficStats, banks_of, run_traffic
from node.genesis import load_genesis

__all__ = ["register"]


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    # Explicit, because a shell may start us with SIGINT ignored, and SIGTERM would
    # otherwise end the demo without stopping its nodes (they run in their own session).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)
    home = Path(args.home)
    if not (home / "network.json").exists():
        init_network(
            home,
            validators=4,
            banks=2,
            chain_id="som-devnet",
            host="127.0.0.1",
            base_port=args.base_port,
        )
    entries = load_network(home)
    genesis = load_genesis(home / "genesis.json")
    print(f"somnet demo: starting {len(entries)} nodes in {home} (logs: {home}/<node>/node.log)")
    children = start_nodes(entries)
    stats: TrafficStats | None = None
    try:
        for entry in entries:
            print(f"  {entry.node_id:8} {entry.role:9} API {entry.api_url}")
        if not wait_ready(entries, children):
            print("somnet demo: the network did not become ready; see the node logs")
            return 1
        print(f"ready: sending {args.rate:g} transfers/s between the banks; Ctrl-C stops\n")
        stats = asyncio.run(
            run_traffic(
                banks_of(entries),
                genesis=genesis,
                rate_per_s=args.rate,
                duration_s=args.duration,
                on_second=print_second,
            )
        )
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        stop_nodes(children)
    if stats is not None and args.duration is not None:
        for key, value in summary(stats, args.rate, args.duration).items():
            print(f"{key:20} {value}")
        return 0 if stats.final > 0 and stats.refused == 0 else 1
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo", help="run a local 4-validator, 2-bank network with transfer traffic"
    )
    parser.add_argument("--home", default="devnet", help="network directory (default devnet)")
    parser.add_argument("--rate", type=float, default=20.0, help="transfers per second")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds (default: until Ctrl-C)"
    )
    parser.add_argument("--base-port", type=int, default=26600)
    parser.set_defaults(handler=run)
