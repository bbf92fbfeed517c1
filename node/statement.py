"""An account's statement: every debit and credit of a height range, ascending, with its
transaction, counterparty, UETR and running balance.

The store keeps one entry per (account, applied transaction that moves it), written with
the block (node/store.py, `account_entries`), so a page is one cursor scan from
(from_height, from_index) plus one read of each block its entries sit in, for the
transaction's kind, signer, counterparty and remittance. The statement lists money
movements: a refused transaction moved nothing and is not listed (its status is at
GET /v1/transactions/{hash}), so every entry is "final" and each balance_after is the
previous entry's plus this one's signed amount.

Paging: at most `limit` entries, and no more blocks than STATEMENT_BYTES_MAX bytes of
them (a page of large blocks is shorter). A page ends on the entry before the next one;
`next_from_height` (and `next_from_index`, 0 unless the page stopped inside a block that
moves the account again) is where the next page starts, null when the range is done.

A remittance is shown only as this node's own participant reads it (`open_remittance`),
so a bank's node shows the texts of the payments it sent or received and no others; the
central bank's node, a recipient of every remittance, shows them all.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from node.block import Block, decode_block
from node.effects import AccountEntry
from node.store import Store, StoreCorrupted, account_entry_key
from node.tx import Issue, Payout, Redeem, Transfer, Tx, decode_tx, open_remittance

__all__ = [
    "STATEMENT_BYTES_MAX",
    "STATEMENT_LIMIT_DEFAULT",
    "STATEMENT_LIMIT_MAX",
    "Reader",
    "account_statement",
]

log = logging.getLogger(__name__)

STATEMENT_LIMIT_DEFAULT = 100
STATEMENT_LIMIT_MAX = 1000  # the default of [api] page_items_max
STATEMENT_BYTES_MAX = 64 * 1024 * 1024  # block bytes one page reads, beyond its first block


@dataclass(frozen=True, slots=True, kw_only=True)
class Reader:
    """Who reads the statement: this node's participant, and the key that opens the
    remittances sealed to it (None: show none)."""

    participant_id: str
    signing_key: SigningKey | None


def account_statement(
    store: Store,
    chain_id: str,
    account: str,
    *,
    from_height: int,
    from_index: int,
    to_height: int,
    limit: int,
    reader: Reader,
) -> dict[str, Any]:
    """One page of the statement of `account`, ascending.

    Args:
        from_height, to_height: the range of heights, both settled.
        from_index: where in block `from_height` the page starts (a previous page's
            next_from_index; 0 for the whole block).
        limit: at most this many entries.
    Returns:
        {"account", "from_height", "to_height", "next_from_height", "next_from_index",
        "transactions": [entry, ...]}; the next page's cursor is null when no entry of the
        range is left.
    Raises:
        StoreCorrupted: an entry does not match the transaction it names.
    """
    assert 1 <= from_height <= to_height
    assert from_index >= 0
    assert limit >= 1
    found = store.load_account_entries(
        account,
        from_height=from_height,
        from_index=from_index,
        to_height=to_height,
        count_max=limit + 1,  # one more: whether there is a next page, and where
    )
    blocks: dict[int, Block] = {}
    bytes_read = 0
    entries: list[dict[str, Any]] = []
    for height, entry in found[:limit]:
        block = blocks.get(height)
        if block is None:
            if bytes_read >= STATEMENT_BYTES_MAX:
                break
            block_bytes = store.load_block(height)
            assert block_bytes is not None  # every settled height has its block
            bytes_read += len(block_bytes)
            block = blocks[height] = decode_block(block_bytes)
        entries.append(_entry(store, chain_id, block, height, entry, reader))
    assert 1 <= len(entries) or not found  # a page always makes progress
    next_height = next_index = None
    if len(entries) < len(found):
        next_height, next_entry = found[len(entries)]
        last_height = found[len(entries) - 1][0]
        next_index = next_entry.tx_index if next_height == last_height else 0
    return {
        "account": account,
        "from_height": from_height,
        "to_height": to_height,
        "next_from_height": next_height,
        "next_from_index": next_index,
        "transactions": entries,
    }


def _entry(
    store: Store, chain_id: str, block: Block, height: int, entry: AccountEntry, reader: Reader
) -> dict[str, Any]:
    """One statement line: the stored movement with what its transaction says."""
    tx = None
    if entry.tx_index < len(block.txs):
        tx = decode_tx(block.txs[entry.tx_index], chain_id)
    movement = None if tx is None else _movement(tx, entry.account)
    if tx is None or tx.tx_hash != entry.tx_hash or movement is None or movement[0] != entry.delta:
        key = account_entry_key(entry.account, height, entry.tx_index)
        raise StoreCorrupted(
            f"store at {store.path}: database 'account_entries' key {key.hex()} does not "
            "match the transaction at its height and index; the node must stop"
        )
    return {
        "tx_hash": entry.tx_hash.hex(),
        "kind": type(tx).__name__.lower(),
        "signer": tx.signer,
        "uetr": str(uuid.UUID(bytes=tx.uetr)),
        "direction": "debit" if entry.delta < 0 else "credit",
        "amount": abs(entry.delta),
        "balance_after": entry.balance_after,
        "height": height,
        "index": entry.tx_index,
        "time_ms": block.header.time_ms,
        "status": "final",
        **movement[1],
        **_remittance(tx, reader),
    }


def _movement(tx: Tx, account: str) -> tuple[int, dict[str, Any]] | None:
    """(signed amount moved on `account`, counterparty fields); None if it moves none."""
    debit = credit = 0
    counterparty: dict[str, Any]
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
    if debit == credit == 0:
        return None
    assert debit == 0 or credit == 0  # SELF_TRANSFER: a payment never pays its payer
    return credit - debit, counterparty


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
