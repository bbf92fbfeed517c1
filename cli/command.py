"""What every command that calls a node's API shares: its options, one way to fail, and
output for people (aligned tables) or for scripts (--json).

A failure is reported once, here, as `somnet CMD: CODE: message` on stderr, with exit
code 1 when a node refused or could not answer, and 2 when the input or the node
directory is wrong (then nothing was sent).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import math
import sys
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from cli.api_client import ApiClient, ApiError, client_for_home
from node.config import ConfigError
from node.errors import GenesisError, TxRefused
from node.keys import KeyFileError

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_REFUSED",
    "CommandFailed",
    "add_api_options",
    "bad_input",
    "client_of",
    "format_time_ms",
    "print_fields",
    "print_table",
    "reports_failures",
]

EXIT_REFUSED = 1
"""A node refused the request or the transaction, or could not be reached."""
EXIT_BAD_INPUT = 2
"""The command line, an input file or the node directory is wrong; nothing was sent."""

Handler = Callable[[argparse.Namespace], int]


class CommandFailed(Exception):
    """A failure the command reports as `CODE: message` and exits with."""

    def __init__(self, code: str, message: str, *, exit_code: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.exit_code = exit_code


def bad_input(message: str, *, code: str = "INVALID_INPUT") -> CommandFailed:
    return CommandFailed(code, message, exit_code=EXIT_BAD_INPUT)


def reports_failures(command: str) -> Callable[[Handler], Handler]:
    """Decorate a command's handler: every failure becomes one stderr line and its exit
    code, here and nowhere else. Our own bugs are not caught; they print a traceback."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def run(args: argparse.Namespace) -> int:
            try:
                return handler(args)
            except CommandFailed as exc:
                return _report(command, exc.code, exc.message, exc.exit_code)
            except ApiError as exc:
                message = str(exc.body.get("message", "")) if exc.body else str(exc)
                return _report(command, exc.code, message, EXIT_REFUSED)
            except TxRefused as exc:  # raised while signing: a field our input got wrong
                return _report(command, exc.code.name, exc.message, EXIT_BAD_INPUT)
            except (ConfigError, GenesisError, KeyFileError) as exc:
                return _report(command, "CONFIG", str(exc), EXIT_BAD_INPUT)

        return run

    return decorate


def _report(command: str, code: str, message: str, exit_code: int) -> int:
    print(f"somnet {command}: {code}: {message}", file=sys.stderr)
    return exit_code


def number_in(lo: float, hi: float, *, integer: bool = False) -> Callable[[str], float]:
    """An argparse `type`: a finite number in [lo, hi] (an integer if `integer`), so NaN,
    inf and out-of-range values are refused before anything runs (exit 2, naming them)."""

    def parse(text: str) -> float:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and lo <= value <= hi):
            raise argparse.ArgumentTypeError(f"{text} is not in [{lo:g}, {hi:g}]")
        return value

    return parse


def add_api_options(parser: argparse.ArgumentParser, *, json_help: str | None = None) -> None:
    """--home (whose participant key signs), --api, --ca and --json."""
    parser.add_argument(
        "--home",
        required=True,
        type=Path,
        help="the node directory whose participant key signs, and whose API is called",
    )
    parser.add_argument("--api", default=None, help="call this API URL instead of the node's own")
    parser.add_argument("--ca", type=Path, default=None, help="the CA file that signed its TLS")
    parser.add_argument(
        "--json", action="store_true", help=json_help or "print one JSON document, for scripts"
    )


def client_of(args: argparse.Namespace) -> ApiClient:
    """The client that --home, --api and --ca describe.

    Raises:
        node.config.ConfigError, node.keys.KeyFileError: an unusable node directory.
    """
    return client_for_home(args.home, api_url=args.api, ca_file=args.ca)


def print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right_aligned: Collection[str] = (),
) -> None:
    """Columns as wide as their widest cell; amounts (named in `right_aligned`) line up
    on their decimal point because every one has two decimals."""
    assert all(len(row) == len(headers) for row in rows)
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if header in right_aligned else cell.ljust(width)
            for header, cell, width in zip(headers, cells, widths, strict=True)
        ]
        return "  ".join(padded).rstrip()

    print(line(headers))
    for row in rows:
        print(line(row))


def print_fields(fields: Sequence[tuple[str, object]]) -> None:
    """One `name value` line each, the values in one column."""
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        print(f"{name:{width}}  {'-' if value is None or value == '' else value}")


def format_time_ms(time_ms: int) -> str:
    """A block time (Unix milliseconds) as UTC, to the second."""
    moment = datetime.datetime.fromtimestamp(time_ms // 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")
