"""`somnet issue`, `somnet redeem` and `somnet payout`: som coming into being, leaving,
and paid out to many accounts at once.

Issue and redeem are the central bank's (the ledger refuses them from anyone else with
NOT_AUTHORIZED); each names the reserve movement it mirrors. A payout reads its legs from
a CSV file and checks every line before anything is signed: one bad line and nothing is
sent. More legs than one transaction holds (node.tx.PAYOUT_LEGS_MAX) become several
payout transactions, each with its own UETR, submitted in batch requests; each settles on
its own, so the command reports the fate of every one.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.api_client import ApiClient, blocking
from cli.command import (
    EXIT_REFUSED,
    CommandFailed,
    add_api_options,
    bad_input,
    client_of,
    print_fields,
    print_table,
    reports_failures,
)
from cli.som import format_som, parse_som
from cli.submit import (
    EXPIRY_BLOCKS_DEFAULT,
    Signer,
    expiry_height,
    new_uetr,
    participant_keys,
    remittance_keys,
    submit_all,
    submit_and_wait,
    unsettled,
)
from node.ids import ID_RULE, is_id
from node.tx import (
    AMOUNT_MAX,
    PAYOUT_LEGS_MAX,
    REMITTANCE_CHARS_MAX,
    RESERVE_REFERENCE_CHARS_MAX,
    sign_issue,
    sign_payout,
    sign_redeem,
)

__all__ = ["PayoutLeg", "parse_payout_csv", "register"]

Json = dict[str, Any]

PAYOUT_CSV_BYTES_MAX = 64 * 1024 * 1024
"""The largest payout file read: about a million legs, a thousand transactions."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PayoutLeg:
    line: int  # in the CSV file, from 1, for messages
    account: str
    amount: int  # tyiyn


def parse_payout_csv(text: str) -> list[PayoutLeg]:
    """The legs of a payout file: one `account,amount_som` a line. A first line whose
    amount column does not start with a digit is a header; blank lines are skipped.

    Raises:
        ValueError: naming the first bad line ("line 3: ..."), or that there are no legs.
    """
    legs: list[PayoutLeg] = []
    for index, fields in enumerate(csv.reader(io.StringIO(text, newline=""))):
        line = index + 1
        cells = [cell.strip() for cell in fields]
        if not any(cells):
            continue
        if len(cells) != 2:
            raise ValueError(f"line {line}: expected account,amount_som; got {len(cells)} fields")
        account, amount_text = cells
        if line == 1 and not amount_text[:1].isdigit():
            continue  # the header
        if not is_id(account):
            raise ValueError(f"line {line}: account {account!r}: expected an id of {ID_RULE}")
        try:
            amount = parse_som(amount_text)
        except ValueError as exc:
            raise ValueError(f"line {line}: {exc}") from exc
        if amount > AMOUNT_MAX:
            raise ValueError(f"line {line}: amount {amount_text!r}: more than the ledger holds")
        legs.append(PayoutLeg(line=line, account=account, amount=amount))
    if not legs:
        raise ValueError("no legs: expected one account,amount_som a line")
    return legs


def _checked_id(text: str, what: str) -> str:
    if not is_id(text):
        raise bad_input(f"{what} {text!r}: expected an id of {ID_RULE}")
    return text


def _reserve_reference(text: str) -> str:
    if not 1 <= len(text) <= RESERVE_REFERENCE_CHARS_MAX:
        message = f"expected 1..{RESERVE_REFERENCE_CHARS_MAX} characters"
        raise bad_input(f"reserve reference {text!r}: {message}")
    return text


def _amount(text: str) -> int:
    try:
        amount = parse_som(text)
    except ValueError as exc:
        raise bad_input(str(exc)) from exc
    if amount > AMOUNT_MAX:
        raise bad_input(f"amount {text!r}: more than the ledger holds")
    return amount


@reports_failures("issue")
def cmd_issue(args: argparse.Namespace) -> int:
    return _issue_or_redeem(args, "issue")


@reports_failures("redeem")
def cmd_redeem(args: argparse.Namespace) -> int:
    return _issue_or_redeem(args, "redeem")


def _issue_or_redeem(args: argparse.Namespace, kind: str) -> int:
    """Both are one account, one amount and one reserve reference, signed by the issuer."""
    account = _checked_id(args.to if kind == "issue" else args.from_account, "account")
    amount = _amount(args.amount)
    reference = _reserve_reference(args.reserve_reference)
    uetr = new_uetr()
    client = client_of(args)
    signer = Signer.of(args.home, client)

    async def submit(api: ApiClient) -> Json:
        expiry = await expiry_height(api, EXPIRY_BLOCKS_DEFAULT)
        if kind == "issue":
            tx = sign_issue(
                signer.key,
                signer.chain_id,
                signer=signer.participant_id,
                uetr=uetr,
                expiry_height=expiry,
                to_account=account,
                amount=amount,
                reserve_reference=reference,
            )
        else:
            tx = sign_redeem(
                signer.key,
                signer.chain_id,
                signer=signer.participant_id,
                uetr=uetr,
                expiry_height=expiry,
                from_account=account,
                amount=amount,
                reserve_reference=reference,
            )
        return await submit_and_wait(api, tx, wait=args.wait)

    result = blocking(client, submit)
    summary = {
        "kind": kind,
        "uetr": str(uuid.UUID(bytes=uetr)),
        "to_account" if kind == "issue" else "from_account": account,
        "amount_tyiyn": amount,
        "reserve_reference": reference,
        **result,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print_fields(
            [
                ("kind", kind),
                ("to" if kind == "issue" else "from", account),
                ("amount", format_som(amount)),
                ("reserve reference", reference),
                ("uetr", summary["uetr"]),
                ("tx hash", result.get("tx_hash")),
                ("status", result.get("status")),
                ("height", result.get("height")),
            ]
        )
    failure = unsettled(result, waited=args.wait)
    if failure is not None:
        raise failure
    return 0


def _read_legs(path: Path) -> list[PayoutLeg]:
    try:
        with path.open("rb") as file:
            data = file.read(PAYOUT_CSV_BYTES_MAX + 1)
    except OSError as exc:
        raise bad_input(f"{path}: {exc.strerror}", code="INVALID_CSV") from exc
    if len(data) > PAYOUT_CSV_BYTES_MAX:
        message = f"{path}: larger than {PAYOUT_CSV_BYTES_MAX} bytes; split the payout"
        raise bad_input(message, code="INVALID_CSV")
    try:
        return parse_payout_csv(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise bad_input(f"{path}: not UTF-8 text ({exc.reason})", code="INVALID_CSV") from exc
    except ValueError as exc:
        raise bad_input(f"{path}: {exc}", code="INVALID_CSV") from exc


def _payout_chunks(
    path: Path, legs: list[PayoutLeg], payer: str, signer: Signer
) -> list[list[PayoutLeg]]:
    """The legs, checked against genesis, in chunks of one payout transaction each."""
    for leg in legs:
        if leg.account == payer:
            message = f"line {leg.line}: pays the paying account {payer}"
            raise bad_input(f"{path}: {message}", code="INVALID_CSV")
        if signer.genesis.owner_of(leg.account) is None:
            message = f"line {leg.line}: no account {leg.account!r}"
            raise bad_input(f"{path}: {message}", code="INVALID_CSV")
    chunks = [legs[i : i + PAYOUT_LEGS_MAX] for i in range(0, len(legs), PAYOUT_LEGS_MAX)]
    for chunk in chunks:
        if sum(leg.amount for leg in chunk) > AMOUNT_MAX:
            message = f"lines {chunk[0].line}..{chunk[-1].line}: more than the ledger holds"
            raise bad_input(f"{path}: {message}", code="INVALID_CSV")
    assert sum(len(chunk) for chunk in chunks) == len(legs)
    return chunks


@reports_failures("payout")
def cmd_payout(args: argparse.Namespace) -> int:
    legs = _read_legs(args.csv)
    if args.remittance and not 1 <= len(args.remittance) <= REMITTANCE_CHARS_MAX:
        raise bad_input(f"remittance: expected 1..{REMITTANCE_CHARS_MAX} characters")
    client = client_of(args)
    signer = Signer.of(args.home, client)
    payer = _checked_id(args.from_account or signer.participant_id, "from account")
    chunks = _payout_chunks(args.csv, legs, payer, signer)
    uetrs = [new_uetr() for _ in chunks]

    async def submit(api: ApiClient) -> list[Json]:
        expiry = await expiry_height(api, EXPIRY_BLOCKS_DEFAULT)
        keys = await participant_keys(api) if args.remittance else {}
        txs = []
        for uetr, chunk in zip(uetrs, chunks, strict=True):
            # A remittance is sealed to the payer, the issuer and every credited bank.
            accounts = [leg.account for leg in chunk]
            recipients = None
            if args.remittance:
                recipients = remittance_keys(signer, keys, accounts)
            txs.append(
                sign_payout(
                    signer.key,
                    signer.chain_id,
                    signer=signer.participant_id,
                    uetr=uetr,
                    expiry_height=expiry,
                    from_account=payer,
                    legs=[(leg.account, leg.amount) for leg in chunk],
                    remittance=args.remittance,
                    recipients=recipients,
                )
            )
        # Every transaction is signed before the first is sent.
        if len(txs) == 1:
            return [await submit_and_wait(api, txs[0], wait=args.wait)]
        return await submit_all(api, txs, wait=args.wait)

    results = blocking(client, submit)
    rows = [
        {
            "uetr": str(uuid.UUID(bytes=uetr)),
            "legs": len(chunk),
            "amount_tyiyn": sum(leg.amount for leg in chunk),
            **result,
        }
        for uetr, chunk, result in zip(uetrs, chunks, results, strict=True)
    ]
    _print_payout(args, payer, rows)
    failures = [f for f in (unsettled(row, waited=args.wait) for row in rows) if f is not None]
    if failures:
        settled = len(rows) - len(failures)
        message = f"{failures[0].message} ({len(failures)} of {len(rows)} failed, {settled} not)"
        raise CommandFailed(failures[0].code, message, exit_code=EXIT_REFUSED)
    return 0


def _print_payout(args: argparse.Namespace, payer: str, rows: list[Json]) -> None:
    total = sum(int(row["amount_tyiyn"]) for row in rows)
    if args.json:
        legs = sum(int(row["legs"]) for row in rows)
        print(
            json.dumps(
                {"from_account": payer, "legs": legs, "amount_tyiyn": total, "transactions": rows}
            )
        )
        return
    headers = ["UETR", "LEGS", "AMOUNT", "STATUS", "HEIGHT", "TX HASH"]
    table = [
        [
            str(row["uetr"]),
            str(row["legs"]),
            format_som(int(row["amount_tyiyn"])),
            str(row.get("code") or row.get("status")),
            str(row.get("height", "-")),
            str(row.get("tx_hash", "-")),
        ]
        for row in rows
    ]
    print_table(headers, table, right_aligned={"LEGS", "AMOUNT", "HEIGHT"})
    print(f"{len(rows)} payout transaction(s) from {payer}, {format_som(total)} som in all")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for kind, direction in (("issue", "to"), ("redeem", "from")):
        verb = "create som in" if kind == "issue" else "withdraw som from"
        parser = subparsers.add_parser(kind, help=f"{verb} an account (the central bank only)")
        add_api_options(parser)
        parser.add_argument(
            f"--{direction}",
            dest="to" if kind == "issue" else "from_account",
            required=True,
            metavar="ACCOUNT",
        )
        parser.add_argument("--amount", required=True, help="som, e.g. 1000000.00")
        parser.add_argument(
            "--reserve-reference",
            required=True,
            metavar="REF",
            help=f"the reserve movement this mirrors (1..{RESERVE_REFERENCE_CHARS_MAX} chars)",
        )
        parser.add_argument("--wait", action="store_true", help="wait until final or refused")
        parser.set_defaults(handler=cmd_issue if kind == "issue" else cmd_redeem)
    payout = subparsers.add_parser("payout", help="pay many accounts from a CSV file")
    add_api_options(payout)
    payout.add_argument(
        "--csv", required=True, type=Path, metavar="FILE", help="account,amount_som a line"
    )
    payout.add_argument(
        "--from",
        dest="from_account",
        default=None,
        metavar="ACCOUNT",
        help="the paying account (default: the participant's main account)",
    )
    payout.add_argument(
        "--remittance",
        default="",
        metavar="TEXT",
        help="text for the credited banks, sealed to them as in transfer",
    )
    payout.add_argument("--wait", action="store_true", help="wait until final or refused")
    payout.set_defaults(handler=cmd_payout)
