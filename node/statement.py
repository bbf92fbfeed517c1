"""An account's statement: the settled transactions that touch it, newest first, with
each sealed remittance opened where this node's participant is one of its recipients.

There is no per-account index yet (issue 8 settles for a bounded scan): the statement
reads back from the last settled block over at most STATEMENT_BLOCKS_MAX blocks and
STATEMENT_BYTES_MAX bytes of blocks, and stops at `limit` entries, so it covers recent
history only; the answer's `from_height` says how far back it looked. A block is decoded
only when the account id's msgpack encoding occurs in its bytes (a substring test with
no false negatives: the id is in every transaction that names it), so the blocks that do
not touch the account cost one read and one search each.

A remittance is shown only as this node's own participant reads it (`open_remittance`),
so a bank's node shows the texts of the payments it sent or received and no others; the
central bank's node, a recipient of every remittance, shows them all.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import msgpack
from nacl.signing import SigningKey

from node.block import decode_block
from node.ledger import decode_tx_result
from node.store import Store
from node.tx import Issue, Payout, Redeem, Transfer, Tx, decode_tx, open_remittance

__all__ = [
    "STATEMENT_BLOCKS_MAX",
    "STATEMENT_BYTES_MAX",
    "STATEMENT_LIMIT_DEFAULT",
    "STATEMENT_LIMIT_MAX",
    "Reader",
    "account_statement",
]

log = logging.getLogger(__name__)

STATEMENT_LIMIT_DEFAULT = 100
STATEMENT_LIMIT_MAX = 1000
STATEMENT_BLOCKS_MAX = 10_000  # how far back one request looks, in blocks
STATEMENT_BYTES_MAX = 64 * 1024 * 1024  # and in block bytes read


@dataclass(frozen=True, slots=True, kw_only=True)
class Reader:
    """Who reads the statement: this node's participant, and the key that opens the
    remittances sealed to it (None: show none)."""

    participant_id: str
    signing_key: SigningKey | None


def account_statement(
    store: Store, chain_id: str, height: int, account: str, *, limit: int, reader: Reader
) -> dict[str, Any]:
    """The statement of `account` up to the settled block at `height`, newest first.

    Returns:
        {"account", "height", "from_height", "transactions": [entry, ...]}: every
        transaction touching the account in blocks from_height..height, newest first,
        unless `limit` entries came first (then from_height is the block it stopped in).
    """
    assert 1 <= limit <= STATEMENT_LIMIT_MAX
    assert height >= 0
    needle = msgpack.packb(account, use_bin_type=True)
    entries: list[dict[str, Any]] = []
    bytes_read = 0
    from_height = height + 1
    lowest = max(1, height - STATEMENT_BLOCKS_MAX + 1)
    for block_height in range(height, lowest - 1, -1):
        if len(entries) >= limit or bytes_read >= STATEMENT_BYTES_MAX:
            break
        from_height = block_height
        block_bytes = store.load_block(block_height)
        assert block_bytes is not None  # every height up to the settled one is stored
        bytes_read += len(block_bytes)
        if needle not in block_bytes:
            continue
        block = decode_block(block_bytes)
        for index in range(len(block.txs) - 1, -1, -1):
            if len(entries) >= limit:
                break
            tx_bytes = block.txs[index]
            if needle not in tx_bytes:
                continue
            entry = _entry(decode_tx(tx_bytes, chain_id), account, reader)
            if entry is not None:
                entries.append(_settled(store, entry, block_height, index, block.header.time_ms))
    assert len(entries) <= limit
    return {
        "account": account,
        "height": height,
        "from_height": min(from_height, height),
        "transactions": entries,
    }


def _settled(
    store: Store, entry: dict[str, Any], height: int, index: int, time_ms: int
) -> dict[str, Any]:
    """The entry with where it settled and its result (final, or refused with a code)."""
    data = store.load_tx_result(bytes.fromhex(entry["tx_hash"]))
    assert data is not None  # every transaction of a settled block has its result
    result = decode_tx_result(data)
    assert (result.height, result.index) == (height, index)
    entry |= {"height": height, "index": index, "time_ms": time_ms}
    if result.code is None:
        entry["status"] = "final"
    else:
        entry |= {"status": "refused", "code": result.code.name}
    return entry


def _entry(tx: Tx, account: str, reader: Reader) -> dict[str, Any] | None:
    """What the transaction moves on `account`, or None if it does not touch it."""
    debit = credit = 0
    counterparty: dict[str, Any] = {}
    if type(tx) is Transfer:
        debit = tx.amount if tx.from_account == account else 0
        credit = tx.amount if tx.to_account == account else 0
        counterparty = {"from_account": tx.from_account, "to_account": tx.to_account}
    elif type(tx) is Payout:
        debit = tx.total if tx.from_account == account else 0
        credit = sum(amount for to, amount in tx.legs if to == account)
        counterparty = {"from_account": tx.from_account, "legs": len(tx.legs)}
    elif type(tx) is Issue:
        credit = tx.amount if tx.to_account == account else 0
        counterparty = {"to_account": tx.to_account}
    else:
        assert type(tx) is Redeem
        debit = tx.amount if tx.from_account == account else 0
        counterparty = {"from_account": tx.from_account}
    if debit == 0 and credit == 0:
        return None  # the id occurred in the bytes, but not as this account's
    assert debit == 0 or credit == 0  # SELF_TRANSFER: a payment never pays its payer
    entry: dict[str, Any] = {
        "tx_hash": tx.tx_hash.hex(),
        "kind": type(tx).__name__.lower(),
        "signer": tx.signer,
        "uetr": str(uuid.UUID(bytes=tx.uetr)),
        "direction": "debit" if debit else "credit",
        "amount": debit or credit,
        **counterparty,
    }
    return entry | _remittance(tx, reader)


def _remittance(tx: Tx, reader: Reader) -> dict[str, Any]:
    """The remittance as this node reads it: "opened" with its text; "sealed" when this
    node is not a recipient; "unreadable" when it is but its box does not open to the
    committed content (the sender's fault). Nothing when there is no remittance."""
    envelope = tx.envelope if type(tx) is Transfer or type(tx) is Payout else None
    if envelope is None:
        return {}
    if reader.signing_key is None or reader.participant_id not in envelope.recipients:
        return {"remittance_status": "sealed"}
    text = open_remittance(tx, reader.participant_id, reader.signing_key)
    if text is None:
        log.warning("tx=%s remittance sealed to us does not open", tx.tx_hash.hex())
        return {"remittance_status": "unreadable"}
    return {"remittance_status": "opened", "remittance": text}
