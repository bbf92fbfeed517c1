"""`somnet balance`, `statement`, `block`, `proof` and `events`: reading the ledger
through a node's API, as the participant whose key signs (it sees its own accounts and
transactions; the central bank and supervisors see everything).

Tables are for people; --json prints the node's answer for scripts, one document (or,
for `events`, one line per block).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
from collections.abc import Callable
from typing import Any

import aiohttp

from cli.api_client import ApiClient, ApiError, blocking
from cli.command import (
    add_api_options,
    bad_input,
    client_of,
    format_time_ms,
    print_fields,
    print_table,
    reports_failures,
)
from cli.som import format_som
from node.ids import ID_RULE, is_id

__all__ = ["register"]

Json = dict[str, Any]

BLOCK_HASH_PATTERN = re.compile(r"[0-9a-f]{64}")
STATEMENT_PAGES_MAX = 1_000_000
"""Pages one statement follows: each starts at a greater height, so the chain's height
bounds them; this bound turns a node that repeats a page into an error, not a hang."""
RESUME_DELAY_S_MIN = 0.5
RESUME_DELAY_S_MAX = 10.0


def _account(args: argparse.Namespace, client: ApiClient) -> str:
    account = args.account or client.credentials.participant_id  # the main account
    if not is_id(account):
        raise bad_input(f"account {account!r}: expected an id of {ID_RULE}")
    return account


@reports_failures("balance")
def cmd_balance(args: argparse.Namespace) -> int:
    client = client_of(args)
    account = _account(args, client)
    answer = blocking(client, lambda api: api.account(account))
    if args.json:
        print(json.dumps(answer))
    else:
        print_table(
            ["ACCOUNT", "BALANCE"],
            [[account, format_som(int(answer["balance"]))]],
            right_aligned={"BALANCE"},
        )
    return 0


@reports_failures("statement")
def cmd_statement(args: argparse.Namespace) -> int:
    client = client_of(args)
    account = _account(args, client)
    for name in ("from_height", "to_height", "limit"):
        value = getattr(args, name)
        if value is not None and value < (1 if name == "limit" else 0):
            raise bad_input(f"--{name.replace('_', '-')} {value}: too small")
    statement = blocking(client, lambda api: _statement(api, account, args))
    if args.json:
        print(json.dumps(statement))
        return 0
    _print_statement(statement)
    return 0


async def _statement(api: ApiClient, account: str, args: argparse.Namespace) -> Json:
    """Every page from --from-height to --to-height (one page of --limit entries if given),
    in ascending height, as one statement."""
    query: dict[str, int] = {}
    for name in ("from_height", "to_height", "limit"):
        if getattr(args, name) is not None:
            query[name] = getattr(args, name)
    first = await api.statement(account, **query)
    transactions = list(first["transactions"])
    page = first
    for _ in range(STATEMENT_PAGES_MAX):
        next_from_height = page.get("next_from_height")
        if args.limit is not None or next_from_height is None:
            break
        if int(next_from_height) <= query.get("from_height", -1):
            raise ApiError(f"statement page from {next_from_height} repeats a page")
        # Later pages end where the first did: one statement of one moment of the chain.
        query |= {"from_height": int(next_from_height), "to_height": int(first["to_height"])}
        page = await api.statement(account, **query)
        transactions += page["transactions"]
    else:
        raise ApiError(f"statement of more than {STATEMENT_PAGES_MAX} pages")
    return {**first, "next_from_height": page.get("next_from_height"), "transactions": transactions}


def _counterparty(entry: Json) -> str:
    debit = entry.get("direction") == "debit"
    if entry.get("kind") == "payout" and debit:
        return f"{entry.get('legs')} legs"
    other = entry.get("to_account") if debit else entry.get("from_account")
    return str(other or entry.get("signer", "-"))


def _print_statement(statement: Json) -> None:
    rows = []
    for entry in statement["transactions"]:
        amount = format_som(int(entry["amount"]))
        debit = entry.get("direction") == "debit"
        balance_after = entry.get("balance_after")
        remittance = entry.get("remittance") or entry.get("remittance_status", "")
        rows.append(
            [
                str(entry.get("height")),
                format_time_ms(int(entry["time_ms"])),
                str(entry.get("kind")),
                _counterparty(entry),
                amount if debit else "",
                "" if debit else amount,
                "-" if balance_after is None else format_som(int(balance_after)),
                str(entry.get("uetr")),
                str(remittance),
                str(entry.get("tx_hash")),
            ]
        )
    headers = [
        "HEIGHT",
        "TIME",
        "KIND",
        "COUNTERPARTY",
        "DEBIT",
        "CREDIT",
        "BALANCE",
        "UETR",
        "REMITTANCE",  # the text where this node may open it, else "sealed"
        "TX HASH",
    ]
    print_table(headers, rows, right_aligned={"HEIGHT", "DEBIT", "CREDIT", "BALANCE"})
    heights = f"heights {statement.get('from_height')}..{statement.get('to_height')}"
    print(f"{statement['account']}: {len(rows)} transaction(s), {heights}")
    if statement.get("next_from_height") is not None:
        print(f"more: --from-height {statement['next_from_height']}")


TX_HASH_PATTERN = re.compile(r"[0-9a-fA-F]{64}")


@reports_failures("proof")
def cmd_proof(args: argparse.Namespace) -> int:
    """Fetch a final transaction's inclusion proof into a file for `somnet verify`."""
    if not TX_HASH_PATTERN.fullmatch(args.tx_hash):
        raise bad_input(f"transaction hash {args.tx_hash!r}: expected 64 hex digits")
    client = client_of(args)
    proof = blocking(client, lambda api: api.transaction_proof(args.tx_hash))
    document = json.dumps(proof, indent=1) + "\n"
    if args.out is None:
        print(document, end="")
        return 0
    try:
        with open(args.out, "x") as file:  # never overwrites another file
            file.write(document)
    except OSError as exc:
        raise bad_input(f"--out {args.out}: {exc.strerror}") from exc
    print(f"proof of {args.tx_hash} at height {proof['height']} written to {args.out}")
    return 0


@reports_failures("block")
def cmd_block(args: argparse.Namespace) -> int:
    height_or_hash: int | str
    if args.block.isdecimal():
        height_or_hash = int(args.block)
    elif BLOCK_HASH_PATTERN.fullmatch(args.block.lower()):
        height_or_hash = args.block.lower()
    else:
        raise bad_input(f"{args.block!r}: expected a height or a 64-hex block hash")
    block = blocking(client_of(args), lambda api: api.block(height_or_hash))
    if args.json:
        print(json.dumps(block))
        return 0
    certificate = block.get("certificate", {})
    print_fields(
        [
            ("height", block.get("height")),
            ("block hash", block.get("block_hash")),
            ("time", format_time_ms(int(block["time_ms"]))),
            ("proposer", block.get("proposer")),
            ("previous hash", block.get("prev_block_hash")),
            ("app hash", block.get("app_hash")),
            ("tx root", block.get("tx_root")),
            ("tx count", block.get("tx_count")),
            ("round", certificate.get("round")),
            ("signers", ", ".join(certificate.get("signers", []))),
            *(("tx", tx_hash) for tx_hash in block.get("tx_hashes", [])),
        ]
    )
    return 0


@reports_failures("events")
def cmd_events(args: argparse.Namespace) -> int:
    if args.from_height is not None and args.from_height < 1:
        raise bad_input(f"--from-height {args.from_height}: heights start at 1")
    client = client_of(args)
    emit = _print_event_json if args.json else _print_event
    # Explicit, because a shell may start us with SIGINT ignored (a script's background
    # job), and then nothing would ever stop the following (as `somnet demo` does).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        asyncio.run(_events(client, args.from_height, emit))
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how one stops following
    raise AssertionError("the event stream is followed until Ctrl-C")


async def _events(client: ApiClient, from_height: int | None, emit: Callable[[Json], None]) -> None:
    """Follow the node's events until cancelled: after a disconnect, or an answer worth
    retrying (unreachable, busy, catching up), resume from the last height + 1 after a
    delay that doubles up to RESUME_DELAY_S_MAX. Other refusals end the command."""
    async with client as api:
        next_height = from_height or max(1, int((await api.status())["height"]))
        delay_s = RESUME_DELAY_S_MIN
        while True:  # until Ctrl-C: following is the command's whole job
            try:
                async for event in api.events(from_height=next_height):
                    height = int(event["height"])
                    if height >= next_height:  # a resumed stream never shows one twice
                        emit(event)
                        next_height = height + 1
                        delay_s = RESUME_DELAY_S_MIN
            except ApiError as exc:
                if not (exc.status == 0 or exc.status == 429 or exc.status >= 500):
                    raise
                print(
                    f"somnet events: {exc.code}: resuming from height {next_height} in "
                    f"{delay_s:g} s",
                    file=sys.stderr,
                    flush=True,
                )
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass  # the stream broke off mid-way (the node restarted): resume quietly
            await asyncio.sleep(delay_s)
            delay_s = min(2 * delay_s, RESUME_DELAY_S_MAX)


def _print_event_json(event: Json) -> None:
    print(json.dumps(event), flush=True)


def _print_event(event: Json) -> None:
    mine = []
    for tx in event.get("transactions", []):
        parties = ">".join(str(tx[k]) for k in ("from_account", "to_account") if tx.get(k))
        fate = str(tx.get("code") or tx.get("status"))
        mine.append(f"{tx.get('kind')} {format_som(int(tx['amount']))} {parties} {fate}")
    line = (
        f"{event.get('height'):>8}  {format_time_ms(int(event['time_ms']))}  "
        f"{event.get('block_hash')}  {event.get('tx_count'):>5} txs"
    )
    print(f"{line}  {'; '.join(mine)}".rstrip(), flush=True)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    balance = subparsers.add_parser("balance", help="an account's balance")
    add_api_options(balance)
    balance.add_argument(
        "account", nargs="?", metavar="ACCOUNT", help="default: the participant's main account"
    )
    balance.set_defaults(handler=cmd_balance)
    statement = subparsers.add_parser("statement", help="an account's settled transactions")
    add_api_options(statement)
    statement.add_argument(
        "account", nargs="?", metavar="ACCOUNT", help="default: the participant's main account"
    )
    statement.add_argument("--from-height", type=int, default=None, metavar="H")
    statement.add_argument("--to-height", type=int, default=None, metavar="H")
    statement.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="one page of at most N entries (default: every page)",
    )
    statement.set_defaults(handler=cmd_statement)
    block = subparsers.add_parser("block", help="a finalized block's header and certificate")
    add_api_options(block)
    block.add_argument("block", metavar="HEIGHT_OR_HASH")
    block.set_defaults(handler=cmd_block)
    proof = subparsers.add_parser(
        "proof", help="a final transaction's inclusion proof, for somnet verify"
    )
    add_api_options(proof)
    proof.add_argument("tx_hash", metavar="TX_HASH")
    proof.add_argument("--out", default=None, metavar="FILE", help="write it here (new file)")
    proof.set_defaults(handler=cmd_proof)
    events = subparsers.add_parser("events", help="follow finalized blocks until Ctrl-C")
    add_api_options(events, json_help="print one JSON line per block, for scripts")
    events.add_argument(
        "--from-height",
        type=int,
        default=None,
        metavar="H",
        help="default: the node's latest block",
    )
    events.set_defaults(handler=cmd_events)
