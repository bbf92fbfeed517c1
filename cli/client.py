"""`somnet transfer` and `somnet status`: a bank's operator talking to its own node."""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from pathlib import Path

from cli.api_client import ApiClient, ApiError, blocking, client_for_home
from node.config import ConfigError, load_config
from node.errors import GenesisError, TxRefused
from node.genesis import load_genesis
from node.keys import KeyFileError
from node.tx import sign_transfer

__all__ = ["parse_som", "register"]

AMOUNT_PATTERN = re.compile(r"(0|[1-9][0-9]{0,16})(\.[0-9]{1,2})?")
EXPIRY_BLOCKS_DEFAULT = 1000
WAIT_MS = 30_000


def parse_som(text: str) -> int:
    """'12.50' som -> 1250 tyiyn, exactly: money never passes through a float."""
    match = AMOUNT_PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(f"amount {text!r}: expected som like 12 or 12.5 or 12.50")
    whole, fraction = match.group(1), (match.group(2) or ".")[1:]
    tyiyn = int(whole) * 100 + int(fraction.ljust(2, "0"))
    if tyiyn < 1:
        raise ValueError(f"amount {text!r}: must be positive")
    return tyiyn


def cmd_transfer(args: argparse.Namespace) -> int:
    home = Path(args.home)
    try:
        amount = parse_som(args.amount)
        uetr = uuid.UUID(args.uetr).bytes if args.uetr else uuid.uuid4().bytes
        config = load_config(home)
        genesis = load_genesis(config.genesis_file)
        client = client_for_home(home)
    except (ValueError, ConfigError, GenesisError, KeyFileError) as exc:
        print(f"somnet transfer: {exc}", file=sys.stderr)
        return 2
    key = client.credentials.signing_key

    async def transfer(api: ApiClient) -> dict[str, object]:
        height = int((await api.status())["height"])
        # The remittance is sealed to the sending bank, the receiving bank and the issuer.
        recipients = genesis.remittance_keys(config.node_id, [args.to]) if args.remittance else None
        tx = sign_transfer(
            key,
            genesis.chain_id,
            signer=config.node_id,
            uetr=uetr,
            expiry_height=height + args.expiry_blocks,
            from_account=args.from_account or config.node_id,
            to_account=args.to,
            amount=amount,
            remittance=args.remittance,
            recipients=recipients,
        )
        result = await api.submit(tx)
        while args.wait and result["status"] == "pending":
            result = await api.transaction(str(result["tx_hash"]), wait_ms=WAIT_MS)
        return result

    try:
        result = blocking(client, transfer)
    except TxRefused as exc:
        print(f"somnet transfer: refused {exc.code.name}: {exc.message}", file=sys.stderr)
        return 1
    except ApiError as exc:
        print(f"somnet transfer: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"uetr": str(uuid.UUID(bytes=uetr)), "amount_tyiyn": amount, **result}))
    return 0 if result["status"] in ("pending", "final") else 1


def cmd_status(args: argparse.Namespace) -> int:
    try:
        client = client_for_home(Path(args.home), api_url=args.api)
    except (ConfigError, KeyFileError) as exc:
        print(f"somnet status: {exc}", file=sys.stderr)
        return 2
    try:
        status = blocking(client, lambda api: api.status())
    except ApiError as exc:
        print(f"somnet status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status))
        return 0
    for key in ("node_id", "role", "chain_id", "height", "last_block_hash", "app_hash"):
        print(f"{key:16} {status.get(key)}")
    print(f"{'peers':16} {', '.join(status.get('peers', [])) or '-'}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    transfer = subparsers.add_parser("transfer", help="sign and submit a som transfer")
    transfer.add_argument("--home", required=True, help="the sending bank's node directory")
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
    status.add_argument("--home", required=True, help="the node's directory: its key signs")
    status.add_argument("--api", default=None, help="another API URL than the node's own")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)
