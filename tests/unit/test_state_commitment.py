"""The app hash commits to the whole state: a store edited at rest, checksums fixed up, is
refused at open; a bank checks its own balance against an app hash (issue 7, finding 9)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lmdb
import pytest

from node.checksum import seal
from node.ledger import Ledger, StoredReferences, open_ledger, verify_account_state
from node.store import (
    DB_BALANCES,
    DB_META,
    DB_REFERENCES,
    KEY_TIP,
    Store,
    StoreCorrupted,
    _encode_tip,
)
from node.tx import decode_tx
from tests.unit.ledger_support import CHAIN_ID, Chain, make_genesis, transfer

MAP_SIZE = 1 << 24
START = [("bank-e", 10**12), ("bank-f", 10**12)]


def build_store(path: Path) -> list[bytes]:
    """Three real blocks of signed transfers settled into a store; returns their txs."""
    genesis = make_genesis(START)
    txs = [
        transfer("bank-e", "bank-e", "bank-f", 10**9),
        transfer("bank-f", "bank-f", "bank-e", 7),
        transfer("bank-e", "bank-e", "val-b", 5),
    ]
    with Store.open(path, chain_id=CHAIN_ID, map_size_bytes=MAP_SIZE) as store:
        chain = Chain(Ledger(genesis, StoredReferences(store)))
        for tx in txs:
            store.commit_block(chain.settle([tx]))
    return txs


def reopen(path: Path) -> Ledger:
    with Store.open(path, chain_id=CHAIN_ID, map_size_bytes=MAP_SIZE) as store:
        return open_ledger(make_genesis(START), store)


def rewrite(path: Path, db_name: bytes, key: bytes, value: bytes | None) -> None:
    """Change one record behind the store's back, with a valid checksum (or delete it)."""
    env = lmdb.open(str(path), max_dbs=16, subdir=True)
    try:
        with env.begin(write=True) as txn:
            db = env.open_db(db_name, txn=txn, create=False)
            if value is None:
                assert txn.delete(key, db=db)
            else:
                txn.put(key, seal(db_name, key, value), db=db)
    finally:
        env.close()


def test_an_untouched_store_reopens_with_the_same_app_hash(tmp_path: Path) -> None:
    build_store(tmp_path / "s")
    ledger = reopen(tmp_path / "s")
    assert ledger.height == 3
    assert ledger.reference_count == 3


def test_money_moved_between_balances_with_fixed_up_checksums_is_refused(tmp_path: Path) -> None:
    """The finding: 10**9 tyiyn moved between two balances, CRCs recomputed, was believed."""
    path = tmp_path / "s"
    build_store(path)
    before = reopen(path).balances
    moved = 10**9
    rewrite(path, DB_BALANCES, b"bank-e", (before["bank-e"] + moved).to_bytes(8, "big"))
    rewrite(path, DB_BALANCES, b"bank-f", (before["bank-f"] - moved).to_bytes(8, "big"))
    with pytest.raises(StoreCorrupted, match="app hash"):
        reopen(path)


def test_a_deleted_reference_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    [first, *_] = build_store(path)
    tx = decode_tx(first, CHAIN_ID)
    rewrite(path, DB_REFERENCES, tx.uetr + tx.signer.encode(), None)
    with pytest.raises(StoreCorrupted, match="app hash"):
        reopen(path)


def test_an_edited_total_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    build_store(path)
    with Store.open(path, chain_id=CHAIN_ID, map_size_bytes=MAP_SIZE) as store:
        tip = store.tip
    edited = dataclasses.replace(tip, issued_total=tip.issued_total + 1)
    rewrite(path, DB_META, KEY_TIP, _encode_tip(edited))
    with pytest.raises(StoreCorrupted, match="app hash"):
        reopen(path)


def test_a_bank_checks_its_balance_against_the_next_certified_header() -> None:
    chain = Chain(Ledger(make_genesis(START)))
    chain.settle([transfer("bank-e", "bank-e", "bank-f", 123)])
    proof = chain.ledger.account_proof("bank-f")
    assert proof.account.balance == 10**12 + 123
    # Block 2's header (certified by its commit) carries the app hash after block 1.
    header = chain.next_block([]).header
    assert header.height == proof.height + 1
    assert verify_account_state(proof, header.app_hash)
    forged = dataclasses.replace(proof.account, balance=proof.account.balance + 1)
    assert not verify_account_state(dataclasses.replace(proof, account=forged), header.app_hash)
    assert not verify_account_state(
        dataclasses.replace(proof, reference_count=proof.reference_count + 1), header.app_hash
    )
    assert not verify_account_state(dataclasses.replace(proof, accounts_root=b"x"), header.app_hash)
    assert not verify_account_state(proof, bytes(32))


def test_the_state_root_changes_with_every_settled_block() -> None:
    chain = Chain(Ledger(make_genesis(START)))
    roots = {chain.ledger.state_root()}
    for amount in (1, 2, 3):
        chain.settle([transfer("bank-e", "bank-e", "bank-f", amount)])
        roots.add(chain.ledger.state_root())
    assert len(roots) == 4
    app_hash = chain.ledger.app_hash
    effects = chain.settle([])
    assert effects.changes_hash == chain.ledger.changes_hash
    assert chain.ledger.state_root() in roots  # an empty block changes no state...
    assert chain.ledger.app_hash != app_hash  # ...but the chain of app hashes moves on
