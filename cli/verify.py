"""`somnet verify PROOF_FILE --genesis genesis.json [--json]`: check a transaction's
inclusion proof offline, trusting nothing but the genesis file (node/inclusion.py).

Exit status 0 when the proof is valid (a summary, or with --json a JSON report, on
stdout); 1 when it is not (`somnet verify: invalid proof: CODE: message` on stderr, or
with --json a JSON report with "valid": false and the code on stdout); 2 when the proof
file or the genesis file cannot be read, or the proof file is not JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from node.errors import GenesisError
from node.genesis import load_genesis
from node.inclusion import (
    PROOF_SIZE_MAX,
    ProofDocumentError,
    ProofRejected,
    ProofVerified,
    decode_json,
    tx_summary,
    verify,
)

__all__ = ["register"]

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNREADABLE = 2


def read_proof_file(path: Path) -> bytes:
    """The file's bytes, reading at most one byte past PROOF_SIZE_MAX (decode_json
    refuses that), so a huge or endless file (/dev/zero) costs nothing.

    Raises:
        OSError: the file cannot be opened or read.
    """
    with path.open("rb") as file:
        return file.read(PROOF_SIZE_MAX + 1)


def report_json(verified: ProofVerified) -> dict[str, Any]:
    return {
        "valid": True,
        "chain_id": verified.chain_id,
        "tx_hash": verified.tx_hash.hex(),
        "height": verified.height,
        "index": verified.index,
        "block_hash": verified.block_hash.hex(),
        "time_ms": verified.time_ms,
        "tx": tx_summary(verified.tx),
        "signers": [{"validator": v, "voting_power": p} for v, p in verified.signers],
        "signed_power": verified.signed_power,
        "total_power": verified.total_power,
    }


def tx_line(tx: dict[str, Any]) -> str:
    """One line of what the transaction moves, from node.inclusion.tx_summary."""
    if tx["kind"] == "payout":
        moved = f"{len(tx['legs'])} legs from {tx['from']}"
    else:
        parties = " ".join(f"{side} {tx[side]}" for side in ("from", "to") if side in tx)
        moved = f"{tx['amount']} tyiyn {parties}"
    return f"{tx['kind']} of {moved}, signed by {tx['signer']}"


def summary_lines(verified: ProofVerified) -> list[str]:
    tx = tx_summary(verified.tx)
    signers = ", ".join(f"{v} ({p})" for v, p in verified.signers)
    share = f"{verified.signed_power} of {verified.total_power}"
    return [
        f"valid proof: transaction {verified.tx_hash.hex()} is final on {verified.chain_id}",
        f"  block     height {verified.height}, index {verified.index}, "
        f"hash {verified.block_hash.hex()}",
        f"  tx        {tx_line(tx)}",
        f"  signers   {signers}",
        f"  power     {share} (more than 2/3 needed)",
    ]


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        data = read_proof_file(Path(args.proof_file))
    except OSError as exc:
        print(f"somnet verify: cannot read {args.proof_file}: {exc.strerror}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        document = decode_json(data)
    except ProofDocumentError as exc:
        print(f"somnet verify: {args.proof_file}: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        genesis = load_genesis(Path(args.genesis))
    except GenesisError as exc:
        print(f"somnet verify: genesis: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    result = verify(document, genesis)
    if isinstance(result, ProofRejected):
        if args.json:
            rejected = {"valid": False, "code": str(result.code), "message": result.message}
            print(json.dumps(rejected, indent=2))
        else:
            print(f"somnet verify: invalid proof: {result.code}: {result.message}", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        print(json.dumps(report_json(result), indent=2))
    else:
        print("\n".join(summary_lines(result)))
    return EXIT_VALID


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = subparsers.add_parser(
        "verify",
        help="check a transaction's inclusion proof offline against the genesis file",
        description="Check a proof from GET /v1/transactions/{tx_hash}/proof: the "
        "transaction is in a block committed by more than 2/3 of the genesis validators' "
        "voting power. Needs no node. Exit status: 0 valid, 1 invalid (with a stable "
        "code), 2 unreadable proof or genesis file.",
    )
    command.add_argument("proof_file", metavar="PROOF_FILE", help="the proof (JSON)")
    command.add_argument("--genesis", required=True, help="the network's genesis.json")
    command.add_argument("--json", action="store_true", help="print a JSON report")
    command.set_defaults(handler=cmd_verify)
