"""The Merkle tree over account balances: incremental roots, proofs and bad input."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node import state_tree
from node.errors import NodeError
from node.merkle import inclusion_proof, merkle_root
from node.state_tree import (
    BALANCE_MAX,
    EMPTY_ROOT,
    AccountProof,
    AccountTree,
    UnknownAccountError,
    encode_account_leaf,
    verify_account_proof,
)
from node.tx import AMOUNT_MAX


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf(account_id: str, balance: int) -> bytes:
    return sha256(b"\x00" + encode_account_leaf(account_id, balance))


def node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def reference_root(balances: dict[str, int]) -> bytes:
    """node/merkle.py's RFC 6962 root over the encoded leaves, in id order."""
    return merkle_root([encode_account_leaf(a, balances[a]) for a in sorted(balances)])


def accounts(count: int) -> dict[str, int]:
    return {f"bank-{i:03d}": i * 1_000 for i in range(count)}


# -- encoding and shape ---------------------------------------------------------------------


def test_leaf_encoding_is_length_prefixed_id_and_8_byte_big_endian_balance() -> None:
    assert encode_account_leaf("ab", 1) == b"\x02ab" + b"\x00" * 7 + b"\x01"
    assert encode_account_leaf("x" * 255, BALANCE_MAX)[-8:] == b"\x7f" + b"\xff" * 7
    # The length prefix keeps the id from running into the balance.
    assert encode_account_leaf("a", 0x62 << 56) != encode_account_leaf("ab", 0)


def test_balance_bound_is_the_ledgers_amount_bound() -> None:
    assert BALANCE_MAX == AMOUNT_MAX


def test_empty_tree() -> None:
    tree = AccountTree({})
    assert tree.root == EMPTY_ROOT == sha256(b"") == merkle_root([])
    assert tree.size == 0
    tree.update([])
    assert tree.root == EMPTY_ROOT
    with pytest.raises(UnknownAccountError):
        tree.proof("bank-a")
    with pytest.raises(UnknownAccountError):
        tree.update([("bank-a", 1)])


def test_one_account_tree_root_is_its_leaf() -> None:
    tree = AccountTree({"bank-a": 7})
    assert tree.root == leaf("bank-a", 7)
    proof = tree.proof("bank-a")
    assert proof == AccountProof(account_id="bank-a", balance=7, index=0, size=1, path=())
    assert verify_account_proof(proof, tree.root)
    tree.update([("bank-a", 8)])
    assert tree.root == leaf("bank-a", 8)
    assert not verify_account_proof(proof, tree.root)


def test_three_accounts_split_at_two_as_rfc_6962() -> None:
    tree = AccountTree({"c": 3, "a": 1, "b": 2})  # sorted by id, whatever the mapping's order
    assert tree.root == node(node(leaf("a", 1), leaf("b", 2)), leaf("c", 3))
    assert tree.proof("c").path == (node(leaf("a", 1), leaf("b", 2)),)
    assert tree.proof("a").path == (leaf("b", 2), leaf("c", 3))


@pytest.mark.parametrize("count", [*range(1, 18), 31, 32, 33, 100])
def test_root_and_every_proof_match_node_merkle(count: int) -> None:
    balances = accounts(count)
    tree = AccountTree(balances)
    assert tree.root == reference_root(balances)
    items = [encode_account_leaf(a, balances[a]) for a in sorted(balances)]
    for index, account_id in enumerate(sorted(balances)):
        proof = tree.proof(account_id)
        assert proof.index == index
        assert proof.size == count
        assert proof.balance == balances[account_id] == tree.balance(account_id)
        assert proof.path == inclusion_proof(items, index).path
        assert verify_account_proof(proof, tree.root)


# -- incremental updates --------------------------------------------------------------------

ids = st.text("abcdefghij-:/.0123456789", min_size=1, max_size=12)
balance_values = st.one_of(st.integers(0, 1_000), st.integers(0, BALANCE_MAX))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_incremental_root_equals_fresh_tree(data: st.DataObject) -> None:
    balances = data.draw(st.dictionaries(ids, balance_values, max_size=70), label="genesis")
    tree = AccountTree(balances)
    known = sorted(balances)
    batches = data.draw(st.integers(0, 4), label="batches")
    for _ in range(batches):
        if known:
            changes = data.draw(st.lists(st.tuples(st.sampled_from(known), balance_values)))
        else:
            changes = []
        tree.update(iter(changes))  # any iterable, consumed once
        balances.update(changes)  # the last balance of an account wins, as in a dict
        assert tree.root == AccountTree(balances).root == reference_root(balances)
    for account_id in known:
        proof = tree.proof(account_id)
        assert proof.balance == balances[account_id]
        assert verify_account_proof(proof, tree.root)


def test_update_after_update_and_unchanged_balances_keep_the_root() -> None:
    balances = accounts(50)
    tree = AccountTree(balances)
    root = tree.root
    tree.update([("bank-007", 1), ("bank-031", 2)])
    assert tree.root != root
    tree.update([("bank-007", balances["bank-007"]), ("bank-031", balances["bank-031"])])
    assert tree.root == root
    tree.update(balances.items())
    assert tree.root == root


class CountingHashlib:
    """Stands in for the module's hashlib, counting sha256 calls."""

    def __init__(self) -> None:
        self.count = 0

    def sha256(self, data: bytes = b"") -> Any:
        self.count += 1
        return hashlib.sha256(data)


@pytest.mark.parametrize(("count", "changed", "hashes_max"), [(1024, 1024, 2047), (1000, 1, 11)])
def test_update_hashes_each_inner_node_once(
    monkeypatch: pytest.MonkeyPatch, count: int, changed: int, hashes_max: int
) -> None:
    balances = accounts(count)
    tree = AccountTree(balances)
    changes = [(account_id, 5) for account_id in sorted(balances)[:changed]]
    counter = CountingHashlib()
    monkeypatch.setattr(state_tree, "hashlib", counter)
    # Every leaf changes: n leaf hashes and n - 1 inner hashes, each node exactly once.
    # One leaf changes: its own hash and one per level above it.
    tree.update(changes)
    assert counter.count == hashes_max
    monkeypatch.undo()
    assert tree.root == AccountTree({**balances, **dict(changes)}).root


# -- proofs that must fail ------------------------------------------------------------------


@pytest.fixture
def tree() -> AccountTree:
    return AccountTree(accounts(13))  # not a power of two: some nodes are carried up


def test_proof_fails_for_a_changed_balance(tree: AccountTree) -> None:
    proof = tree.proof("bank-005")
    for balance in (0, proof.balance - 1, proof.balance + 1, BALANCE_MAX):
        assert not verify_account_proof(dataclasses.replace(proof, balance=balance), tree.root)


def test_proof_fails_for_another_account_id(tree: AccountTree) -> None:
    proof = tree.proof("bank-005")
    assert not verify_account_proof(dataclasses.replace(proof, account_id="bank-006"), tree.root)


def test_proof_fails_for_a_wrong_index(tree: AccountTree) -> None:
    for account_id in (f"bank-{i:03d}" for i in range(13)):
        proof = tree.proof(account_id)
        for index in range(-1, 15):
            if index != proof.index:
                wrong = dataclasses.replace(proof, index=index)
                assert not verify_account_proof(wrong, tree.root)


def test_proof_size_is_bound_by_the_path_shape_only(tree: AccountTree) -> None:
    # RFC 9162 semantics, documented in the module: a size that changes the leaf's path
    # shape fails; one that keeps it (leaf 0 is four left-hand steps in 9..16 leaves)
    # still verifies, since the root, not the proof, fixes the size.
    last = tree.proof("bank-012")  # carried up twice: a path of two hashes
    assert len(last.path) == 2
    for size in (0, 1, 12, 14, 16, 2**63):
        assert not verify_account_proof(dataclasses.replace(last, size=size), tree.root)
    first = tree.proof("bank-000")
    for size in (0, 1, 8, 17):
        assert not verify_account_proof(dataclasses.replace(first, size=size), tree.root)
    for size in range(9, 17):
        assert verify_account_proof(dataclasses.replace(first, size=size), tree.root)


def test_proof_fails_for_a_truncated_or_extended_path(tree: AccountTree) -> None:
    proof = tree.proof("bank-004")
    assert len(proof.path) == 4
    for length in range(len(proof.path)):
        truncated = dataclasses.replace(proof, path=proof.path[:length])
        assert not verify_account_proof(truncated, tree.root)
    extended = dataclasses.replace(proof, path=(*proof.path, tree.root))
    assert not verify_account_proof(extended, tree.root)
    flipped = dataclasses.replace(proof, path=(proof.path[0][::-1], *proof.path[1:]))
    assert not verify_account_proof(flipped, tree.root)


def test_proof_fails_against_another_root(tree: AccountTree) -> None:
    proof = tree.proof("bank-004")
    old_root = tree.root
    tree.update([("bank-009", 1)])
    assert verify_account_proof(proof, old_root)
    assert not verify_account_proof(proof, tree.root)  # bank-004 did not change, its path did
    assert verify_account_proof(tree.proof("bank-004"), tree.root)
    assert not verify_account_proof(proof, EMPTY_ROOT)
    assert not verify_account_proof(proof, old_root[:31])


@pytest.mark.parametrize(
    "fields",
    [
        {"balance": -1},
        {"balance": BALANCE_MAX + 1},
        {"balance": True},
        {"balance": 1.0},
        {"index": "0"},
        {"index": None},
        {"size": 13.0},
        {"account_id": ""},
        {"account_id": "x" * 256},
        {"account_id": "\udc80"},
        {"account_id": b"bank-001"},
        {"path": None},
        {"path": [b"\x00" * 32] * 4},
        {"path": ("0" * 32,) * 4},
        {"path": (b"\x00" * 31,) * 4},
        {"path": (b"\x00" * 32,) * 65},
    ],
)
def test_malformed_proof_is_refused_without_raising(
    tree: AccountTree, fields: dict[str, object]
) -> None:
    proof = tree.proof("bank-001")
    assert not verify_account_proof(dataclasses.replace(proof, **fields), tree.root)  # type: ignore[arg-type]


# -- bad input ------------------------------------------------------------------------------


def test_unknown_account_is_a_node_error_and_a_key_error(tree: AccountTree) -> None:
    with pytest.raises(UnknownAccountError, match="unknown account 'bank-999'") as caught:
        tree.proof("bank-999")
    assert isinstance(caught.value, NodeError)
    assert isinstance(caught.value, KeyError)
    assert caught.value.account_id == "bank-999"
    with pytest.raises(KeyError):
        tree.balance("bank-999")


def test_update_with_an_unknown_account_changes_nothing(tree: AccountTree) -> None:
    root = tree.root
    with pytest.raises(UnknownAccountError, match="bank-999"):
        tree.update([("bank-001", 5), ("bank-999", 5), ("bank-002", 5)])
    assert tree.root == root
    assert tree.balance("bank-001") == 1_000
    assert verify_account_proof(tree.proof("bank-001"), root)


@pytest.mark.parametrize("balance", [-1, BALANCE_MAX + 1, True])
def test_invalid_balance_is_a_bug(tree: AccountTree, balance: int) -> None:
    with pytest.raises(AssertionError):
        AccountTree({"bank-a": balance})
    with pytest.raises(AssertionError):
        tree.update([("bank-001", balance)])


@pytest.mark.parametrize("account_id", ["", "x" * 256])
def test_invalid_account_id_is_a_bug(account_id: str) -> None:
    with pytest.raises(AssertionError):
        AccountTree({account_id: 0})
