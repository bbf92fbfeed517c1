"""Anchoring: the hashes of finalized blocks, written to an EVM chain (BNB Smart Chain).

Theory of operation:
- Every `every_blocks` finalized heights, the anchoring node sends one EVM transaction:
  0 value, to its own address, calldata = `encode_calldata` (a fixed tag, the somnet
  chain id, the height, the block hash and the app hash). A small anchor contract could
  take the same calldata later: only the `to` of the transaction would change.
- The `Anchorer` is an asyncio task beside the driver. It only reads what the driver
  settled (`note_settled` is the driver's `on_settled` callback: it records a height, no
  I/O), so a slow or dead endpoint delays anchoring and never consensus. Every RPC call
  is awaited with a deadline (node/evm_rpc.py).
- Crash safety: a transaction is signed, and its record (nonce, raw bytes) is stored in
  LMDB (the store's `anchors` database) before it is sent. After a restart, a record that
  is not yet in a block is sent again, byte for byte; a height that has a record is never
  signed again, so the EVM chain gets at most one anchor per height. A transaction that
  stays out of blocks is replaced: same nonce (so at most one of them can be included),
  a higher fee, at most ATTEMPTS_MAX times and never above `fee_per_gas_max_wei`.
- Status (`advance`, pure): `pending` (stage signed or sent) until a receipt with status
  1 is in a canonical block: `included`; `finalized` once that block is at or below the
  chain's `finalized` block and its hash at that height is still the receipt's. A reorg
  that removes it moves it back to pending (and it is sent again).
- Backlog: due heights are anchored in order; when more than BACKLOG_DUE_MAX of them wait,
  only the latest is anchored and the skipped range is logged and shown by the API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from node.block import decode_block_header
from node.config import NodeConfig
from node.driver import Settled
from node.errors import NodeError
from node.events_wait import wait_event
from node.evm_rpc import EvmRpc, Receipt, RpcCallError, RpcError, hex_int
from node.keys import KeyFileError, read_key_document, write_key_document
from node.store import Store

if TYPE_CHECKING:  # eth_account is imported where a key is made or read: importing it
    # costs about a second of CPU (py_ecc builds curve tables), which every `somnet`
    # command and every node start paid, anchoring or not (issue 12, catch-up).
    from eth_account.signers.local import LocalAccount

__all__ = [
    "ANCHOR_TAG",
    "AnchorAttempt",
    "AnchorError",
    "AnchorPayload",
    "AnchorRecord",
    "Anchorer",
    "Stage",
    "advance",
    "decode_calldata",
    "decode_record",
    "encode_calldata",
    "encode_record",
    "load_anchor_key",
    "write_anchor_key",
]

log = logging.getLogger(__name__)

ANCHOR_TAG = b"SOMNET-ANCHOR/1\x00"  # 16 bytes; a new layout gets a new tag
HASH_SIZE = 32
CHAIN_ID_SIZE_MAX = 64
ATTEMPTS_MAX = 8  # a transaction and its replacements: the bound on fee bumps
FEE_BUMP_PERCENT = 25  # geth and anvil want at least +10% to accept a replacement
REPLACEMENT_BUMP_MIN_PERCENT = 10  # less than this, and the stuck attempt is sent again
GAS_MARGIN_PERCENT = 20  # over eth_estimateGas
BACKLOG_DUE_MAX = 5  # due heights waiting beyond this: anchor only the latest
ANCHORS_LISTED_MAX = 100
assert len(ANCHOR_TAG) == 16
assert FEE_BUMP_PERCENT >= REPLACEMENT_BUMP_MIN_PERCENT >= 10


class AnchorError(NodeError):
    """Anchoring cannot proceed (bad calldata, bad key, wrong endpoint, no funds)."""


class Stage(StrEnum):
    SIGNED = "signed"  # stored, maybe not yet sent
    SENT = "sent"  # the endpoint took it (or said it already had it)
    INCLUDED = "included"  # a receipt with status 1 in a canonical block
    FINALIZED = "finalized"  # that block is finalized and still canonical
    FAILED = "failed"  # a receipt with status 0: no anchor; the height is signed again


PENDING_STAGES = (Stage.SIGNED, Stage.SENT)


def api_status(stage: Stage) -> str:
    """The status the API shows: pending, included, finalized (or failed)."""
    return "pending" if stage in PENDING_STAGES else stage.value


# -- calldata -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AnchorPayload:
    chain_id: str
    height: int
    block_hash: bytes
    app_hash: bytes


def encode_calldata(payload: AnchorPayload) -> bytes:
    """TAG (16) | chain id length (1) | chain id (ASCII) | height (8, big-endian) |
    block hash (32) | app hash (32)."""
    chain_id = payload.chain_id.encode("ascii")
    assert 1 <= len(chain_id) <= CHAIN_ID_SIZE_MAX
    assert 1 <= payload.height < 2**63
    assert len(payload.block_hash) == HASH_SIZE
    assert len(payload.app_hash) == HASH_SIZE
    data = b"".join(
        (
            ANCHOR_TAG,
            bytes([len(chain_id)]),
            chain_id,
            payload.height.to_bytes(8, "big"),
            payload.block_hash,
            payload.app_hash,
        )
    )
    assert decode_calldata(data) == payload
    return data


def decode_calldata(data: bytes) -> AnchorPayload:
    """The payload of anchor calldata.

    Raises:
        AnchorError: not somnet anchor calldata (wrong tag, size or fields).
    """
    if not data.startswith(ANCHOR_TAG):
        raise AnchorError("calldata does not start with the somnet anchor tag")
    at = len(ANCHOR_TAG)
    if len(data) <= at:
        raise AnchorError("calldata ends after the tag")
    size = data[at]
    at += 1
    if not 1 <= size <= CHAIN_ID_SIZE_MAX or len(data) != at + size + 8 + 2 * HASH_SIZE:
        raise AnchorError(f"calldata of {len(data)} bytes does not fit the anchor layout")
    try:
        chain_id = data[at : at + size].decode("ascii")
    except UnicodeDecodeError as exc:
        raise AnchorError("calldata's chain id is not ASCII") from exc
    at += size
    height = int.from_bytes(data[at : at + 8], "big")
    if not 1 <= height < 2**63:
        raise AnchorError(f"calldata's height {height} is out of range")
    at += 8
    return AnchorPayload(
        chain_id=chain_id,
        height=height,
        block_hash=data[at : at + HASH_SIZE],
        app_hash=data[at + HASH_SIZE :],
    )


# -- records --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AnchorAttempt:
    """One signed transaction for a height: the first, or a replacement (same nonce)."""

    tx_hash: bytes
    raw_tx: bytes
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AnchorRecord:
    height: int
    block_hash: bytes
    app_hash: bytes
    nonce: int
    gas: int
    attempts: tuple[AnchorAttempt, ...]
    stage: Stage
    evm_tx_hash: bytes | None = None  # the attempt in a block
    evm_block_number: int | None = None
    evm_block_hash: bytes | None = None
    sent_unix_ms: int = 0  # when the newest attempt was signed (replacement clock)
    finalized_at_height: int | None = None  # somnet's height when it was seen finalized

    def __post_init__(self) -> None:
        assert 1 <= len(self.attempts) <= ATTEMPTS_MAX
        if self.stage in (Stage.INCLUDED, Stage.FINALIZED):
            assert self.evm_block_number is not None and self.evm_tx_hash is not None
        if self.stage in PENDING_STAGES:
            assert self.evm_block_number is None


def encode_record(record: AnchorRecord) -> bytes:
    document = {
        "height": record.height,
        "block_hash": record.block_hash.hex(),
        "app_hash": record.app_hash.hex(),
        "nonce": record.nonce,
        "gas": record.gas,
        "attempts": [
            {
                "tx_hash": a.tx_hash.hex(),
                "raw_tx": a.raw_tx.hex(),
                "max_fee_per_gas": a.max_fee_per_gas,
                "max_priority_fee_per_gas": a.max_priority_fee_per_gas,
            }
            for a in record.attempts
        ],
        "stage": record.stage.value,
        "evm_tx_hash": None if record.evm_tx_hash is None else record.evm_tx_hash.hex(),
        "evm_block_number": record.evm_block_number,
        "evm_block_hash": None if record.evm_block_hash is None else record.evm_block_hash.hex(),
        "sent_unix_ms": record.sent_unix_ms,
        "finalized_at_height": record.finalized_at_height,
    }
    data = json.dumps(document, sort_keys=True).encode()
    assert decode_record(data) == record
    return data


def decode_record(data: bytes) -> AnchorRecord:
    """A stored record (sealed by the store, so a failure here is our own bug)."""
    d = json.loads(data)

    def opt_hex(value: str | None) -> bytes | None:
        return None if value is None else bytes.fromhex(value)

    return AnchorRecord(
        height=d["height"],
        block_hash=bytes.fromhex(d["block_hash"]),
        app_hash=bytes.fromhex(d["app_hash"]),
        nonce=d["nonce"],
        gas=d["gas"],
        attempts=tuple(
            AnchorAttempt(
                tx_hash=bytes.fromhex(a["tx_hash"]),
                raw_tx=bytes.fromhex(a["raw_tx"]),
                max_fee_per_gas=a["max_fee_per_gas"],
                max_priority_fee_per_gas=a["max_priority_fee_per_gas"],
            )
            for a in d["attempts"]
        ),
        stage=Stage(d["stage"]),
        evm_tx_hash=opt_hex(d["evm_tx_hash"]),
        evm_block_number=d["evm_block_number"],
        evm_block_hash=opt_hex(d["evm_block_hash"]),
        sent_unix_ms=d["sent_unix_ms"],
        finalized_at_height=d["finalized_at_height"],
    )


def record_json(record: AnchorRecord) -> dict[str, Any]:
    """The API's view of a record."""
    return {
        "height": record.height,
        "block_hash": record.block_hash.hex(),
        "app_hash": record.app_hash.hex(),
        "status": api_status(record.stage),
        "stage": record.stage.value,
        "nonce": record.nonce,
        "evm_tx_hash": "0x" + (record.evm_tx_hash or record.attempts[-1].tx_hash).hex(),
        "evm_tx_hashes": ["0x" + a.tx_hash.hex() for a in record.attempts],
        "evm_block_number": record.evm_block_number,
        "evm_block_hash": None
        if record.evm_block_hash is None
        else "0x" + record.evm_block_hash.hex(),
        "finalized_at_height": record.finalized_at_height,
    }


# -- the status state machine ---------------------------------------------------------------


def advance(
    record: AnchorRecord,
    *,
    receipt: Receipt | None,
    canonical_hash: bytes | None,
    finalized_number: int | None,
    settled_height: int,
) -> AnchorRecord:
    """The record after looking at the chain. Pure.

    Args:
        receipt: the receipt of one of the record's attempts, None if none is in a block.
        canonical_hash: the chain's block hash at the receipt's block number, now.
        finalized_number: the number of the chain's `finalized` block, None if none yet.
        settled_height: somnet's height now (kept when the anchor becomes finalized).
    """
    assert record.stage is not Stage.FAILED
    if record.stage is Stage.FINALIZED:
        return record  # finality is final: nothing the endpoint says later moves it back
    unincluded = replace(
        record,
        stage=Stage.SENT if record.stage is not Stage.SIGNED else Stage.SIGNED,
        evm_tx_hash=None,
        evm_block_number=None,
        evm_block_hash=None,
    )
    if receipt is None or canonical_hash != receipt.block_hash:
        return unincluded  # not in a block, or its block was reorganised away
    assert any(a.tx_hash == receipt.tx_hash for a in record.attempts)
    if receipt.status != 1:
        return replace(unincluded, stage=Stage.FAILED)
    finalized = finalized_number is not None and receipt.block_number <= finalized_number
    return replace(
        record,
        stage=Stage.FINALIZED if finalized else Stage.INCLUDED,
        evm_tx_hash=receipt.tx_hash,
        evm_block_number=receipt.block_number,
        evm_block_hash=receipt.block_hash,
        finalized_at_height=settled_height if finalized else None,
    )


def next_due_height(
    last_anchored: int, settled: int, every_blocks: int
) -> tuple[int, tuple[int, int] | None] | None:
    """(the next height to anchor, the skipped range or None), None when none is due."""
    assert every_blocks >= 1
    latest_due = settled // every_blocks * every_blocks
    if latest_due <= last_anchored or latest_due == 0:
        return None
    first_due = (last_anchored // every_blocks + 1) * every_blocks
    waiting = (latest_due - first_due) // every_blocks + 1
    if waiting > BACKLOG_DUE_MAX:
        return latest_due, (first_due, latest_due - every_blocks)
    return first_due, None


# -- the key --------------------------------------------------------------------------------


def write_anchor_key(path: Path, private_key: bytes | None = None) -> str:
    """Create a secp256k1 key file (0600, never overwritten); its EVM address."""
    from eth_account import Account

    account = Account.create() if private_key is None else Account.from_key(private_key)
    document = {"type": "secp256k1", "private_key_hex": account.key.hex().removeprefix("0x"),
                "address": account.address}  # fmt: skip
    try:
        write_key_document(path, document)
    except KeyFileError as exc:
        raise AnchorError(str(exc)) from exc
    return str(account.address)


def load_anchor_key(path: Path) -> LocalAccount:
    """Raises AnchorError: missing, readable by others, or not a secp256k1 key file."""
    try:
        document = read_key_document(path)
    except KeyFileError as exc:
        raise AnchorError(str(exc)) from exc
    if document.get("type") != "secp256k1":
        raise AnchorError(f"{path}: expected a secp256k1 key file")
    from eth_account import Account

    try:
        account: LocalAccount = Account.from_key(bytes.fromhex(document["private_key_hex"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AnchorError(f"{path}: not an anchor key file: {exc}") from exc
    return account


# -- the task -------------------------------------------------------------------------------


class Anchorer:
    """The anchoring task of one node. Reads settled heights, writes anchor records."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        chain_id: str,
        store: Store,
        account: LocalAccount,
        settled_height: int,
        unix_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.config = config
        self.chain_id = chain_id
        self.store = store
        self.account = account
        self.settled_height = settled_height
        self._unix_ms = unix_ms
        self.error: str | None = None  # the last reason anchoring is stuck, for the API
        self.skipped: tuple[int, int] | None = None  # the last range skipped (backlog)
        self._chain_checked = False
        self._resent: set[bytes] = set()  # attempts sent again since this start
        self._wake = asyncio.Event()

    def note_settled(self, settled: Settled) -> None:
        """The driver's on_settled callback: no I/O, never blocks the driver."""
        self.settled_height = settled.height
        self._wake.set()

    def records(self, count_max: int = ANCHORS_LISTED_MAX) -> list[AnchorRecord]:
        return [decode_record(data) for _, data in self.store.load_anchors(count_max)]

    def summary(self) -> dict[str, Any]:
        finalized = next((r for r in self.records() if r.stage is Stage.FINALIZED), None)
        return {
            "address": self.account.address,
            "evm_chain_id": self.config.anchor_evm_chain_id,
            "every_blocks": self.config.anchor_every_blocks,
            "settled_height": self.settled_height,
            "last_finalized_height": None if finalized is None else finalized.height,
            "lag_blocks": self.settled_height - (0 if finalized is None else finalized.height),
            "skipped": None if self.skipped is None else list(self.skipped),
            "error": self.error,
        }

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.config.anchor_rpc_timeout_ms / 1000)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            rpc = EvmRpc(
                self.config.anchor_rpc_url,
                timeout_ms=self.config.anchor_rpc_timeout_ms,
                session=session,
            )
            log.info("anchoring to %s every %d blocks from %s", rpc.url,
                     self.config.anchor_every_blocks, self.account.address)  # fmt: skip
            while True:
                try:
                    await self.step(rpc)
                    self.error = None
                except AnchorError as exc:
                    self._report(str(exc), logging.ERROR)
                except RpcError as exc:
                    self._report(f"EVM endpoint: {exc}", logging.WARNING)
                self._wake.clear()
                await wait_event(self._wake, self.config.anchor_poll_interval_ms / 1000)

    def _report(self, message: str, level: int) -> None:
        if message != self.error:  # once per new reason, not once per poll
            log.log(level, "anchoring: %s", message)
        self.error = message

    async def step(self, rpc: EvmRpc) -> None:
        """Look at the chain once: follow unfinished anchors, then start the next one."""
        if not self._chain_checked:
            await self._check_chain_id(rpc)
        records = self.records()
        unfinished = [r for r in reversed(records) if r.stage not in (Stage.FINALIZED,)]
        for record in unfinished:
            if record.stage is not Stage.FAILED:
                await self._follow(rpc, record)
        records = self.records()
        if any(r.stage in PENDING_STAGES for r in records):
            return  # one transaction out of blocks at a time: nonces stay in order
        failed = next((r for r in records if r.stage is Stage.FAILED), None)
        anchored = max((r.height for r in records if r.stage is not Stage.FAILED), default=0)
        if failed is not None and failed.height > anchored:
            await self._sign_and_send(rpc, failed.height, failed)
            return
        due = next_due_height(anchored, self.settled_height, self.config.anchor_every_blocks)
        if due is None:
            return
        height, skipped = due
        if skipped is not None:
            self.skipped = skipped
            log.warning(
                "anchoring is far behind: heights %d..%d are not anchored; anchoring only "
                "the latest due height %d",
                *skipped,
                height,
            )
        await self._sign_and_send(rpc, height, None)

    async def _check_chain_id(self, rpc: EvmRpc) -> None:
        reported = await rpc.chain_id()
        expected = self.config.anchor_evm_chain_id
        if reported != expected:
            raise AnchorError(
                f"the endpoint {rpc.url} serves EVM chain id {reported}, but anchor.evm_chain_id "
                f"is {expected}: refusing to sign anything for it"
            )
        self._chain_checked = True

    async def _follow(self, rpc: EvmRpc, record: AnchorRecord) -> None:
        receipt = None
        for attempt in reversed(record.attempts):
            receipt = await rpc.receipt(attempt.tx_hash)
            if receipt is not None:
                break
        canonical = finalized = None
        if receipt is not None:
            canonical = await rpc.block_hash_at(receipt.block_number)
            finalized = await rpc.block_number("finalized")
        after = advance(
            record,
            receipt=receipt,
            canonical_hash=canonical,
            finalized_number=finalized,
            settled_height=self.settled_height,
        )
        if after.stage is Stage.FAILED:
            log.error("anchor h=%d tx=%s reverted on the EVM chain; signing it again",
                      record.height, receipt.tx_hash.hex() if receipt else "?")  # fmt: skip
        if after.stage is not record.stage:
            log.info("anchor h=%d %s -> %s evm_block=%s", record.height, record.stage.value,
                     after.stage.value, after.evm_block_number)  # fmt: skip
        if after != record:
            self.store.save_anchor(after.height, encode_record(after))
        if after.stage in PENDING_STAGES:
            await self._push(rpc, after)

    async def _push(self, rpc: EvmRpc, record: AnchorRecord) -> None:
        """Send a pending record's newest attempt if it may not have been sent (stage
        signed, or not since this start), or replace it when it is stuck."""
        newest = record.attempts[-1]
        age_ms = self._unix_ms() - record.sent_unix_ms
        if record.stage is Stage.SIGNED or newest.tx_hash not in self._resent:
            await self._send(rpc, record)
        elif age_ms >= self.config.anchor_replace_after_ms:
            await self._replace(rpc, record)

    async def _send(self, rpc: EvmRpc, record: AnchorRecord) -> None:
        newest = record.attempts[-1]
        try:
            await rpc.call("eth_sendRawTransaction", ["0x" + newest.raw_tx.hex()])
        except RpcCallError as exc:
            text = exc.rpc_message.lower()
            # The endpoint has it, or a transaction with its nonce was included (which one
            # the receipts tell): either way, sent.
            if not any(s in text for s in ("already known", "already imported", "nonce too low",
                                           "nonce is too low", "replacement")):  # fmt: skip
                if "insufficient funds" in text:
                    raise AnchorError(
                        f"the anchor account {self.account.address} cannot pay for the anchor "
                        f"of height {record.height}: {exc.rpc_message}; fund it"
                    ) from exc
                raise
        self._resent.add(newest.tx_hash)
        if record.stage is Stage.SIGNED:
            self.store.save_anchor(record.height, encode_record(replace(record, stage=Stage.SENT)))
        log.info("anchor h=%d nonce=%d tx=0x%s sent", record.height, record.nonce,
                 newest.tx_hash.hex())  # fmt: skip

    async def _replace(self, rpc: EvmRpc, record: AnchorRecord) -> None:
        newest = record.attempts[-1]
        cap = self.config.anchor_fee_per_gas_max_wei
        max_fee = min(cap, newest.max_fee_per_gas * (100 + FEE_BUMP_PERCENT) // 100 + 1)
        tip = min(max_fee, newest.max_priority_fee_per_gas * (100 + FEE_BUMP_PERCENT) // 100 + 1)
        # Nodes such as geth and BSC's refuse a replacement that adds less than 10% to the
        # fees: a bump the cap cuts below that would be recorded yet never reach a pool.
        too_small = max_fee * 100 < newest.max_fee_per_gas * (100 + REPLACEMENT_BUMP_MIN_PERCENT)
        if len(record.attempts) >= ATTEMPTS_MAX or too_small:
            stuck = f"anchor of height {record.height} is stuck at the fee cap or attempt bound"
            self._report(
                f"{stuck} ({newest.max_fee_per_gas} wei/gas); sending it again", logging.WARNING
            )
            await self._send(rpc, replace(record, stage=Stage.SIGNED))
            return
        attempt = self._sign(record.height, record.nonce, record.gas, max_fee, tip,
                             record.block_hash, record.app_hash)  # fmt: skip
        replaced = replace(
            record,
            attempts=(*record.attempts, attempt),
            stage=Stage.SIGNED,
            sent_unix_ms=self._unix_ms(),
        )
        self.store.save_anchor(record.height, encode_record(replaced))  # before it is sent
        log.warning(
            "anchor h=%d nonce=%d not included after %d ms: replaced with fee %d",
            record.height,
            record.nonce,
            self.config.anchor_replace_after_ms,
            max_fee,
        )
        await self._send(rpc, replaced)

    def _sign(self, height: int, nonce: int, gas: int, max_fee: int, tip: int,
              block_hash: bytes, app_hash: bytes) -> AnchorAttempt:  # fmt: skip
        data = encode_calldata(
            AnchorPayload(
                chain_id=self.chain_id, height=height, block_hash=block_hash, app_hash=app_hash
            )
        )
        assert self._chain_checked  # never a signature before the endpoint's chain id is
        signed = self.account.sign_transaction(
            {
                "type": 2,
                "chainId": self.config.anchor_evm_chain_id,
                "nonce": nonce,
                "to": self.account.address,
                "value": 0,
                "data": data,
                "gas": gas,
                "maxFeePerGas": max_fee,
                "maxPriorityFeePerGas": tip,
            }
        )
        return AnchorAttempt(
            tx_hash=bytes(signed.hash),
            raw_tx=bytes(signed.raw_transaction),
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=tip,
        )

    async def _sign_and_send(self, rpc: EvmRpc, height: int, failed: AnchorRecord | None) -> None:
        block = self.store.load_block(height)
        assert block is not None  # height <= settled height
        header = decode_block_header(block)
        block_hash, app_hash = header.hash(), header.app_hash
        address = self.account.address
        payload = AnchorPayload(
            chain_id=self.chain_id, height=height, block_hash=block_hash, app_hash=app_hash
        )
        data = "0x" + encode_calldata(payload).hex()
        nonce = hex_int(await rpc.call("eth_getTransactionCount", [address, "pending"]), "nonce")
        # Never under the calldata floor (EIP-7623): such a transaction is taken, then dropped.
        estimate = hex_int(
            await rpc.call(
                "eth_estimateGas", [{"from": address, "to": address, "value": "0x0", "data": data}]
            ),
            "eth_estimateGas",
        )
        gas = estimate * (100 + GAS_MARGIN_PERCENT) // 100
        if estimate > self.config.anchor_gas_max:
            raise AnchorError(f"eth_estimateGas asks {estimate} gas, over anchor.gas_max "
                              f"{self.config.anchor_gas_max}")  # fmt: skip
        gas = min(gas, self.config.anchor_gas_max)
        gas_price = hex_int(await rpc.call("eth_gasPrice", []), "eth_gasPrice")
        try:
            tip = hex_int(await rpc.call("eth_maxPriorityFeePerGas", []), "priority fee")
        except RpcCallError:
            tip = gas_price  # an endpoint without EIP-1559 fee hints
        cap = self.config.anchor_fee_per_gas_max_wei
        if gas_price > cap:
            raise AnchorError(f"the EVM gas price {gas_price} wei is over "
                              f"anchor.fee_per_gas_max_wei {cap}; anchoring waits")  # fmt: skip
        max_fee = min(cap, max(2 * gas_price, tip))
        tip = min(tip, max_fee)
        balance = hex_int(await rpc.call("eth_getBalance", [address, "latest"]), "balance")
        if balance < gas * max_fee:
            raise AnchorError(
                f"the anchor account {address} holds {balance} wei on EVM chain "
                f"{self.config.anchor_evm_chain_id}; the anchor of height {height} may cost "
                f"up to {gas * max_fee} wei: fund the account"
            )
        attempt = self._sign(height, nonce, gas, max_fee, tip, block_hash, app_hash)
        record = AnchorRecord(
            height=height,
            block_hash=block_hash,
            app_hash=app_hash,
            nonce=nonce,
            gas=gas,
            attempts=(attempt,),
            stage=Stage.SIGNED,
            sent_unix_ms=self._unix_ms(),
        )
        if failed is not None:
            log.warning("anchor h=%d signed again after a revert", height)
        self.store.save_anchor(height, encode_record(record))  # stored before it is sent
        log.info("anchor h=%d nonce=%d gas=%d (estimate %d) signed", height, nonce, gas, estimate)
        await self._send(rpc, record)
