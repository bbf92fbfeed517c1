"""`somnet anchor verify`: does the anchor of a height hold?

It holds when all of these do:
1. the node's block at that height is committed by its certificate, checked against the
   genesis validator set (more than 2/3 of voting power signed this block hash);
2. the anchoring EVM transaction's calldata names this somnet chain, this height, this
   block hash and this app hash;
3. its receipt has status 1, in a block at or below the EVM chain's finalized block, and
   that block's hash at that height is still the receipt's.
The EVM transaction is the one the node recorded (GET /v1/anchors/{height}, or the store
under --home), or any transaction given with --tx.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from cli.api_client import ApiClient, ApiError, blocking, client_for_home
from consensus import crypto
from consensus.errors import WireError
from consensus.wire import decode_certificate
from node.anchor import AnchorError, decode_calldata, decode_record
from node.block import decode_block_header
from node.config import load_config
from node.errors import BlockError, GenesisError, NodeError
from node.evm_rpc import EvmRpc, RpcError, hex_bytes
from node.genesis import Genesis, load_genesis
from node.store import Store

__all__ = ["register"]

RPC_TIMEOUT_MS = 10_000


@dataclass(slots=True, kw_only=True)
class Verdict:
    checks: list[tuple[bool, str]] = field(default_factory=list)

    def check(self, ok: bool, text: str) -> bool:
        self.checks.append((ok, text))
        return ok

    @property
    def holds(self) -> bool:
        return bool(self.checks) and all(ok for ok, _ in self.checks)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeView:
    """What the node holds for the height: its block, certificate and anchor tx hash."""

    genesis: Genesis
    block_hash: bytes
    app_hash: bytes
    certificate: bytes
    tx_hash: bytes | None


def from_home(home: Path, height: int) -> NodeView:
    config = load_config(home)
    genesis = load_genesis(config.genesis_file)
    with Store.open_readonly(config.data_dir, chain_id=genesis.chain_id) as store:
        block = store.load_block(height)
        certificate = store.load_certificate(height)
        record = store.load_anchor(height)
    if block is None or certificate is None:
        raise NodeError(f"{home}: the node holds no block at height {height}")
    header = decode_block_header(block)
    tx_hash = None
    if record is not None:
        anchor = decode_record(record)
        tx_hash = anchor.evm_tx_hash or anchor.attempts[-1].tx_hash
    return NodeView(genesis=genesis, block_hash=header.hash(), app_hash=header.app_hash,
                    certificate=certificate, tx_hash=tx_hash)  # fmt: skip


def from_api(client: ApiClient, genesis_file: Path, height: int) -> NodeView:
    genesis = load_genesis(genesis_file)

    async def read(api: ApiClient) -> tuple[dict[str, Any], bytes | None]:
        block = await api.block(height)
        try:
            anchor = await api.anchor(height)
        except ApiError as exc:
            if exc.status != 404:
                raise
            return block, None
        return block, bytes.fromhex(str(anchor["evm_tx_hash"]).removeprefix("0x"))

    block, tx_hash = blocking(client, read)
    return NodeView(
        genesis=genesis,
        block_hash=bytes.fromhex(block["block_hash"]),
        app_hash=bytes.fromhex(block["app_hash"]),
        certificate=bytes.fromhex(block["certificate"]["encoded"]),
        tx_hash=tx_hash,
    )


def check_certificate(verdict: Verdict, view: NodeView, height: int) -> None:
    try:
        certificate = decode_certificate(view.certificate)
    except WireError as exc:
        verdict.check(False, f"the node's certificate for height {height} does not decode: {exc}")
        return
    valid = (
        certificate.height == height
        and certificate.value_id == view.block_hash
        and crypto.verify_certificate(
            view.genesis.chain_id, certificate, view.genesis.validator_set()
        )
    )
    verdict.check(
        valid,
        f"block {height} hash {view.block_hash.hex()} is "
        + ("committed by" if valid else "NOT committed by")
        + f" its certificate under the genesis validator set of {view.genesis.chain_id}",
    )


async def check_evm(verdict: Verdict, view: NodeView, height: int, rpc_url: str,
                    tx_hash: bytes) -> None:  # fmt: skip
    async with aiohttp.ClientSession() as session:
        rpc = EvmRpc(rpc_url, timeout_ms=RPC_TIMEOUT_MS, session=session)
        evm_chain = await rpc.chain_id()
        tx = await rpc.transaction(tx_hash)
        if not verdict.check(tx is not None, f"EVM chain {evm_chain} has tx 0x{tx_hash.hex()}"):
            return
        assert tx is not None
        try:
            payload = decode_calldata(hex_bytes(tx.get("input"), "input"))
        except AnchorError as exc:
            verdict.check(False, f"its calldata is no somnet anchor: {exc}")
            return
        verdict.check(payload.chain_id == view.genesis.chain_id,
                      f"calldata names somnet chain {payload.chain_id!r}")  # fmt: skip
        verdict.check(payload.height == height, f"calldata names height {payload.height}")
        verdict.check(
            payload.block_hash == view.block_hash,
            f"calldata block hash {payload.block_hash.hex()} "
            + ("matches" if payload.block_hash == view.block_hash else "DIFFERS FROM")
            + " the node's block hash",
        )
        verdict.check(payload.app_hash == view.app_hash,
                      "calldata app hash " + ("matches" if payload.app_hash == view.app_hash
                                              else "DIFFERS FROM") + " the node's")  # fmt: skip
        receipt = await rpc.receipt(tx_hash)
        if not verdict.check(receipt is not None, "the transaction is in an EVM block"):
            return
        assert receipt is not None
        verdict.check(receipt.status == 1, f"its receipt status is {receipt.status}")
        canonical = await rpc.block_hash_at(receipt.block_number)
        finalized = await rpc.block_number("finalized")
        verdict.check(canonical == receipt.block_hash,
                      f"EVM block {receipt.block_number} is canonical")  # fmt: skip
        verdict.check(
            finalized is not None and receipt.block_number <= finalized,
            f"EVM block {receipt.block_number} is finalized (finalized block: {finalized})",
        )


def verify(args: argparse.Namespace) -> int:
    height: int = args.height
    try:
        if args.home:
            view = from_home(Path(args.home), height)
        else:
            client = client_for_home(Path(args.key_home), api_url=args.api)
            view = from_api(client, Path(args.genesis), height)
    except (NodeError, GenesisError, BlockError, ApiError, OSError) as exc:
        print(f"somnet anchor verify: cannot read the node's block {height}: {exc}")
        return 2
    tx_hash = bytes.fromhex(args.tx.removeprefix("0x")) if args.tx else view.tx_hash
    verdict = Verdict()
    check_certificate(verdict, view, height)
    if tx_hash is None:
        verdict.check(False, f"the node recorded no anchor for height {height} (give --tx)")
    else:
        try:
            asyncio.run(check_evm(verdict, view, height, args.rpc, tx_hash))
        except RpcError as exc:
            verdict.check(False, f"EVM endpoint {args.rpc}: {exc}")
    for ok, text in verdict.checks:
        print(f"  {'ok  ' if ok else 'FAIL'} {text}")
    if verdict.holds:
        print(f"anchor of height {height} HOLDS")
        return 0
    reasons = "; ".join(text for ok, text in verdict.checks if not ok)
    print(f"anchor of height {height} DOES NOT HOLD: {reasons}")
    return 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    anchor = subparsers.add_parser("anchor", help="check anchors on the EVM chain")
    commands = anchor.add_subparsers(dest="anchor_command", required=True, metavar="COMMAND")
    parser = commands.add_parser("verify", help="does the anchor of a height hold? exit 0 if so")
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--rpc", required=True, metavar="URL", help="EVM JSON-RPC endpoint")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--api", metavar="URL", help="a node's API (needs --genesis and --key-home)"
    )
    source.add_argument("--home", metavar="DIR", help="a node's home directory")
    parser.add_argument("--genesis", metavar="FILE", help="genesis.json, with --api")
    parser.add_argument(
        "--key-home", metavar="DIR", help="with --api: the node directory whose key signs"
    )
    parser.add_argument("--tx", metavar="HASH", help="check this EVM transaction instead")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.api and not (args.genesis and args.key_home):
        print("somnet anchor verify: --api needs --genesis FILE (the validator set) and "
              "--key-home DIR (whose participant key signs the requests)")  # fmt: skip
        return 2
    return verify(args)
