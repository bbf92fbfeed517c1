"""`somnet load`: drive a running network with signed transfers and report latency."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from cli.devnet import load_network
from cli.traffic import TrafficStats, banks_of, run_traffic
from node.genesis import load_genesis

__all__ = ["print_second", "register"]


def print_second(stats: TrafficStats, elapsed_s: float) -> None:
    print(
        f"t={elapsed_s:5.0f}s height={stats.height:6d} submitted={stats.submitted:7d}"
        f" final={stats.final:7d} refused={stats.refused:5d} pending={len(stats.pending):6d}"
        f" last second: p50={stats.percentile_ms(0.5, window=True):7.1f}ms"
        f" p99={stats.percentile_ms(0.99, window=True):7.1f}ms",
        flush=True,
    )


def summary(stats: TrafficStats, rate: float, duration_s: float) -> dict[str, object]:
    return {
        "rate_offered_per_s": rate,
        "duration_s": duration_s,
        "submitted": stats.submitted,
        "final": stats.final,
        "refused": stats.refused,
        "not_final": len(stats.pending),
        "final_per_s": round(stats.final / duration_s, 1),
        "latency_p50_ms": round(stats.percentile_ms(0.5), 1),
        "latency_p99_ms": round(stats.percentile_ms(0.99), 1),
        "latency_max_ms": round(stats.percentile_ms(1.0), 1),
    }


def cmd_load(args: argparse.Namespace) -> int:
    directory = Path(args.home)
    entries = load_network(directory)
    genesis = load_genesis(directory / "genesis.json")
    stats = asyncio.run(
        run_traffic(
            banks_of(entries),
            genesis=genesis,
            rate_per_s=args.rate,
            duration_s=args.duration,
            on_second=print_second,
        )
    )
    result = summary(stats, args.rate, args.duration)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:20} {value}")
    return 0 if stats.refused == 0 and not stats.pending else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = subparsers.add_parser("load", help="send signed transfers to a running network")
    load.add_argument("--home", default="devnet", help="the network directory")
    load.add_argument("--rate", type=float, default=100.0, help="transfers per second")
    load.add_argument("--duration", type=float, default=30.0, help="seconds")
    load.add_argument("--json", action="store_true")
    load.set_defaults(handler=cmd_load)
