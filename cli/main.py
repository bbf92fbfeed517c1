"""The `somnet` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version

from cli import (
    anchor,
    bench,
    check,
    client,
    demo,
    devnet,
    gov,
    health,
    load,
    money,
    read,
    run,
    sim,
    verify,
)

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="somnet", description="digital som settlement node")
    parser.add_argument("--version", action="version", version=f"somnet {version('somnet')}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each command module adds its subparser and sets `handler` through set_defaults.
    modules = (devnet, run, check, health, client, money, read, verify, load, sim, demo, bench,
               anchor, gov)  # fmt: skip
    for module in modules:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.error(f"unknown command {args.command}")
    code = handler(args)
    assert isinstance(code, int)
    return code


if __name__ == "__main__":
    sys.exit(main())
