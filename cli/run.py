"""`somnet run --home DIR`: one node, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
from pathlib import Path

from node.log_format import configure_logging
from node.main import run_node

__all__ = ["register"]


def cmd_run(args: argparse.Namespace) -> int:
    # Until node.toml names the node (and its log format), its refusal is logged as "-".
    configure_logging(node_id="-", log_format="logfmt", level="INFO")
    return run_node(Path(args.home))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser("run", help="run one node")
    run.add_argument("--home", required=True, help="the node's directory (node.toml, keys)")
    run.set_defaults(handler=cmd_run)
