"""The `somnet` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["COMMAND_MODULES", "main"]

# Each command's module in cli/, in the order `somnet --help` lists them. Running one
# command imports only its own module: a node (`somnet run`) starts about 0.3 s sooner
# than with every command's dependencies (a node catching up counts that time), and
# tests/unit/test_cli_commands.py checks this table against what the modules register.
COMMAND_MODULES = {
    "init": "devnet",
    "devnet": "devnet",
    "run": "run",
    "check": "check",
    "health": "health",
    "transfer": "client",
    "status": "client",
    "issue": "money",
    "redeem": "money",
    "payout": "money",
    "balance": "read",
    "statement": "read",
    "block": "read",
    "proof": "read",
    "events": "read",
    "verify": "verify",
    "load": "load",
    "sim": "sim",
    "demo": "demo",
    "bench": "bench",
    "anchor": "anchor",
    "gov": "gov",
}


class _Version(argparse.Action):
    """--version, reading the installed version only when asked (importlib.metadata
    alone costs every command about 50 ms)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib.metadata import version

        print(f"somnet {version('somnet')}")
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of `command` alone, or of every command (for help, or an unknown one)."""
    parser = argparse.ArgumentParser(prog="somnet", description="digital som settlement node")
    parser.add_argument("--version", action=_Version)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each command module adds its subparsers and sets `handler` through set_defaults.
    if command in COMMAND_MODULES:
        modules = [COMMAND_MODULES[command]]
    else:
        modules = list(dict.fromkeys(COMMAND_MODULES.values()))
    for name in modules:
        importlib.import_module(f"cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    command = next((a for a in arguments if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(arguments)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.error(f"unknown command {args.command}")
    code = handler(args)
    assert isinstance(code, int)
    return code


if __name__ == "__main__":
    sys.exit(main())
