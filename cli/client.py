"""`somnet transfer` and `somnet status`: a bank's operator talking to its own node."""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path

from cli.api_client import ApiClient, blocking
from cli.command import add_api_options, bad_input, client_of, print_fields, reports_failures
from cli.som import parse_som
from cli.submit import (
    EXPIRY_BLOCKS_DEFAULT,
    Signer,
    expiry_height,
    new_uetr,
    participant_keys,
    remittance_keys,
    submit_and_wait,
    unsettled,
)
from node.tx import sign_transfer

__all__ = ["register"]


@reports_failures("transfer")
def cmd_transfer(args: argparse.Namespace) -> int:
    try:
        amount = parse_som(args.amount)
        uetr = new_uetr(args.uetr)
    except ValueError as exc:
        raise bad_input(str(exc)) from exc
    client = client_of(args)
    signer = Signer.of(args.home, client)

    async def transfer(api: ApiClient) -> dict[str, object]:
        # The remittance is sealed to the sending bank, the receiving bank and the issuer.
        recipients = None
        if args.remittance:
            recipients = remittance_keys(signer, await participant_keys(api), [args.to])
        tx = sign_transfer(
            signer.key,
            signer.chain_id,
            signer=signer.participant_id,
            uetr=uetr,
            expiry_height=await expiry_height(api, args.expiry_blocks),
            from_account=args.from_account or signer.participant_id,
            to_account=args.to,
            amount=amount,
            remittance=args.remittance,
            recipients=recipients,
        )
        return await submit_and_wait(api, tx, wait=args.wait)

    result = blocking(client, transfer)
    print(json.dumps({"uetr": str(uuid.UUID(bytes=uetr)), "amount_tyiyn": amount, **result}))
    failure = unsettled(result, waited=args.wait)
    if failure is not None:
        raise failure
    return 0


@reports_failures("status")
def cmd_status(args: argparse.Namespace) -> int:
    status = blocking(client_of(args), lambda api: api.status())
    if args.json:
        print(json.dumps(status))
        return 0
    keys = ("node_id", "role", "chain_id", "height", "last_block_hash", "app_hash")
    print_fields(
        [*((key, status.get(key)) for key in keys), ("peers", ", ".join(status.get("peers", [])))]
    )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    transfer = subparsers.add_parser("transfer", help="sign and submit a som transfer")
    transfer.add_argument(
        "--home", required=True, type=Path, help="the sending bank's node directory: its key signs"
    )
    transfer.add_argument("--api", default=None, help="another API URL than the node's own")
    transfer.add_argument("--ca", type=Path, default=None, help="the CA file that signed its TLS")
    transfer.add_argument("--to", required=True, help="the receiving account id")
    transfer.add_argument("--amount", required=True, help="som, e.g. 12.50")
    transfer.add_argument("--from", dest="from_account", default=None)
    transfer.add_argument("--uetr", default=None, help="UUID; a fresh one if omitted")
    transfer.add_argument(
        "--remittance",
        default="",
        help="text for the receiving bank (1..140 characters); it travels sealed to the "
        "sending and receiving banks and the central bank, never in clear",
    )
    transfer.add_argument("--expiry-blocks", type=int, default=EXPIRY_BLOCKS_DEFAULT)
    transfer.add_argument("--wait", action="store_true", help="wait until final or refused")
    transfer.set_defaults(handler=cmd_transfer)
    status = subparsers.add_parser("status", help="show a node's status")
    add_api_options(status)
    status.set_defaults(handler=cmd_status)
