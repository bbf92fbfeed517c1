"""A Merkle commitment over the ledger's account balances, updated block by block.

Theory of operation.
- Why a tree. A checksum over the stored balances catches accidents, not tampering: whoever
  edits a balance can fix up the checksum too. A root over all balances, committed in the
  chain's app hash, is agreed by a quorum of validators; a node recomputes it at start from
  its stored balances and refuses a store whose root differs. A Merkle tree (rather than one
  hash of everything) lets a block's settlement update the root in O(k log n) hashes for k
  changed accounts, and lets a bank check its own balance against the root with a proof of
  about log2(n) hashes, without seeing anybody else's balance.
- Leaves. The accounts are fixed by genesis; leaf i is the account with the i-th smallest id
  (code point order, the same as the UTF-8 bytes' order). Its leaf data is
  `encode_account_leaf(id, balance)`:

      len(id) (1 byte) || id (UTF-8, 1..255 bytes) || balance (8 bytes, big-endian)

  The length prefix and the fixed-width balance make the encoding unambiguous: no two
  (id, balance) pairs encode to the same bytes.
- Shape and hashes: exactly node/merkle.py's, i.e. RFC 6962. leaf hash =
  sha256(0x00 || leaf data), inner hash = sha256(0x01 || left || right); a tree of n leaves
  splits at the largest power of two below n. The empty tree's root is sha256(b"")
  (`EMPTY_ROOT`); a one-account tree's root is its leaf hash. Reusing RFC 6962 rather than
  a padded power-of-two tree costs nothing here (see the levels below) and lets the proof
  reuse node/merkle.py's RFC 9162 verifier, so any RFC-conformant verifier can check it.
- Storage: one flat list of 32-byte hashes per level, `levels[0]` the leaves and
  `levels[-1] == [root]`. Level j+1 pairs the neighbours of level j; an odd last node is
  carried up unchanged (the same node, stored again), which is the RFC 6962 shape
  (node/merkle.py `merkle_root` explains why). About 2n hashes in all; no per-node objects.
- Update: set the changed leaves, then walk up level by level over the set of dirty parent
  indices, so each inner node is rehashed once per call however many of its leaves changed:
  at most k * ceil(log2 n) inner hashes, far fewer when the changes share ancestors. An
  unknown account is refused before anything changes, so a failed update leaves the tree
  as it was.
- Proof (`AccountProof`): the account id, its balance, its leaf index, the tree size and the
  RFC 6962 audit path (sibling hashes from the leaf up, skipping levels where the node is
  carried). `verify_account_proof` needs only the proof and a trusted root: it re-encodes
  the leaf and walks the path with node/merkle.py `root_from_proof`. What a proof shows:
  the leaf (id, balance) is in the tree of that root, and the tree holds each genesis
  account once. Index and size are checked as RFC 9162 checks them: for a given size only
  the true index verifies, but the root, not the proof, fixes the size, so the same path
  can also verify under another size that gives the leaf the same path shape (leaf 0 of 12
  leaves and of 13 both take four left-hand steps). A verifier that relies on the index or
  the size takes them from genesis (the sorted account list), which the app hash chains.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from node.errors import NodeError
from node.merkle import PROOF_PATH_MAX, InclusionProof, root_from_proof

__all__ = [
    "BALANCE_MAX",
    "EMPTY_ROOT",
    "AccountProof",
    "AccountTree",
    "UnknownAccountError",
    "encode_account_leaf",
    "verify_account_proof",
]

HASH_SIZE = 32
ACCOUNT_ID_BYTES_MAX = 255  # the length prefix is one byte; genesis ids are at most 64
BALANCE_SIZE = 8
# The ledger keeps outstanding som (and so every balance) at or below node.tx.AMOUNT_MAX.
BALANCE_MAX = 2**63 - 1
EMPTY_ROOT = hashlib.sha256(b"").digest()

assert BALANCE_MAX < 1 << (8 * BALANCE_SIZE)
assert len(EMPTY_ROOT) == HASH_SIZE


class UnknownAccountError(NodeError, KeyError):
    """An account id that is not in the tree (not a genesis account).

    Both a NodeError, like everything the node raises on purpose, and a KeyError, since the
    tree is looked up by account id like the ledger's balances dict.
    """

    def __init__(self, account_id: str) -> None:
        super().__init__(account_id)
        self.account_id = account_id

    def __str__(self) -> str:  # KeyError's own __str__ would print the repr of the args
        return f"unknown account {self.account_id!r}"


def _id_valid(id_bytes: bytes) -> bool:
    return 1 <= len(id_bytes) <= ACCOUNT_ID_BYTES_MAX


def _balance_valid(balance: object) -> bool:
    # bool is an int; a True balance is a bug, not one tyiyn.
    return type(balance) is int and 0 <= balance <= BALANCE_MAX


def encode_account_leaf(account_id: str, balance: int) -> bytes:
    """The leaf data of one account: len(id) || id (UTF-8) || balance (8 bytes, big-endian).

    Args:
        account_id: 1..255 bytes of UTF-8.
        balance: an int in 0..BALANCE_MAX.
    Returns:
        The bytes whose RFC 6962 leaf hash, sha256(0x00 || data), is the account's leaf.
    Raises:
        AssertionError: an id or balance out of those bounds, which is our bug.
    """
    id_bytes = account_id.encode()
    assert _id_valid(id_bytes), account_id
    assert _balance_valid(balance), balance
    return bytes((len(id_bytes),)) + id_bytes + balance.to_bytes(BALANCE_SIZE, "big")


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountProof:
    """That `account_id` holds `balance` in the tree of some root: its RFC 6962 audit path.

    `path` lists the sibling hashes from the leaf up to the root (RFC 6962 section 2.1.1).
    """

    account_id: str
    balance: int  # tyiyn
    index: int  # the leaf's position: the account's rank by id among all accounts
    size: int  # the number of accounts (leaves) in the tree
    path: tuple[bytes, ...]


def verify_account_proof(proof: AccountProof, root: bytes) -> bool:
    """True if `proof` shows that its account holds its balance in the tree of `root`.

    Pure and total: a malformed proof (bad id or balance, index out of range, a path of the
    wrong length or with hashes of the wrong size) gives False, never an exception.

    Args:
        proof: as received, e.g. from a node's API; not trusted.
        root: the state root the caller trusts (e.g. from a certified block).
    Returns:
        Whether the path leads from the account's leaf to `root`.
    """
    if not _proof_well_formed(proof) or not isinstance(root, bytes) or len(root) != HASH_SIZE:
        return False
    data = encode_account_leaf(proof.account_id, proof.balance)
    inclusion = InclusionProof(index=proof.index, size=proof.size, path=proof.path)
    return root_from_proof(data, inclusion) == root


def _proof_well_formed(proof: AccountProof) -> bool:
    """Whether the proof's fields have the types and bounds the encoding needs.

    The fields are read as `object`: a proof decoded from a client's bytes is typed only by
    its decoder, and a verifier must not raise on whatever it holds.
    """
    account_id: object = proof.account_id
    index: object = proof.index
    size: object = proof.size
    path: object = proof.path
    if not isinstance(account_id, str) or not _balance_valid(proof.balance):
        return False
    if type(index) is not int or type(size) is not int:
        return False
    if not isinstance(path, tuple) or len(path) > PROOF_PATH_MAX:
        return False
    if not all(type(sibling) is bytes for sibling in path):
        return False
    try:
        id_bytes = account_id.encode()
    except UnicodeEncodeError:  # a lone surrogate: never a genesis id
        return False
    return _id_valid(id_bytes)


class AccountTree:
    """The Merkle tree of all accounts' balances. Single owner, not thread-safe."""

    def __init__(self, balances: Mapping[str, int]) -> None:
        """Build the tree of `balances` (every genesis account, zero balances included).

        O(n) hashes. Ids and balances come from genesis and the ledger, so a bad one is our
        bug and fails an assertion.
        """
        self._account_ids = sorted(balances)
        self._index_by_id = {account_id: i for i, account_id in enumerate(self._account_ids)}
        self._balances = [balances[account_id] for account_id in self._account_ids]
        # sha256 input of each leaf but its balance: 0x00 || len(id) || id, kept so that an
        # update hashes a changed leaf without re-encoding its id.
        self._leaf_prefixes: list[bytes] = []
        for account_id, balance in zip(self._account_ids, self._balances, strict=True):
            id_bytes = account_id.encode()
            assert _id_valid(id_bytes), account_id
            assert _balance_valid(balance), (account_id, balance)
            self._leaf_prefixes.append(b"\x00" + bytes((len(id_bytes),)) + id_bytes)
        sha256 = hashlib.sha256
        level = [
            sha256(prefix + balance.to_bytes(BALANCE_SIZE, "big")).digest()
            for prefix, balance in zip(self._leaf_prefixes, self._balances, strict=True)
        ]
        self._levels = [level]
        while len(level) > 1:
            above = [
                sha256(b"\x01" + left + right).digest()
                for left, right in zip(level[0::2], level[1::2], strict=False)
            ]
            if len(level) & 1:
                above.append(level[-1])  # an odd last node is carried up unchanged
            self._levels.append(above)
            level = above
        assert len(self._levels[-1]) == min(1, len(self._account_ids))
        assert len(self._levels) <= PROOF_PATH_MAX + 1

    @property
    def size(self) -> int:
        """The number of accounts (leaves)."""
        return len(self._account_ids)

    @property
    def root(self) -> bytes:
        """The 32-byte state root; EMPTY_ROOT for a tree without accounts."""
        top = self._levels[-1]
        if not top:
            return EMPTY_ROOT
        assert len(top) == 1
        return top[0]

    def balance(self, account_id: str) -> int:
        """The balance the tree holds for `account_id`. Raises UnknownAccountError."""
        return self._balances[self._index(account_id)]

    def _index(self, account_id: str) -> int:
        try:
            return self._index_by_id[account_id]
        except KeyError as exc:
            raise UnknownAccountError(account_id) from exc

    def update(self, changes: Iterable[tuple[str, int]]) -> None:
        """Set new balances for some accounts and recompute only their paths to the root.

        Each inner node above a changed leaf is rehashed once per call, level by level over
        the set of dirty parents: O(k log n) hashes for k changes. If an account appears
        twice, its last balance wins.

        Args:
            changes: (account id, new balance) pairs; balances in 0..BALANCE_MAX.
        Raises:
            UnknownAccountError: an account is not in the tree. Nothing is changed then.
        """
        # Resolve every id before touching anything, so that a refused update changes nothing.
        resolved = [(self._index(account_id), balance) for account_id, balance in changes]
        if not resolved:
            return
        sha256 = hashlib.sha256
        balances = self._balances
        prefixes = self._leaf_prefixes
        leaves = self._levels[0]
        for index, balance in resolved:
            assert _balance_valid(balance), (self._account_ids[index], balance)
            balances[index] = balance
            leaves[index] = sha256(prefixes[index] + balance.to_bytes(BALANCE_SIZE, "big")).digest()
        dirty = {index for index, _ in resolved}
        for below, above in zip(self._levels, self._levels[1:], strict=False):
            count_below = len(below)
            parents = {index >> 1 for index in dirty}
            for parent in parents:
                left = parent << 1
                if left + 1 < count_below:
                    above[parent] = sha256(b"\x01" + below[left] + below[left + 1]).digest()
                else:
                    above[parent] = below[left]  # the odd last node, carried up unchanged
            dirty = parents
        assert dirty == {0}
        assert len(self._levels[-1]) == 1

    def proof(self, account_id: str) -> AccountProof:
        """The proof of `account_id`'s current balance against the current root.

        Raises:
            UnknownAccountError: the account is not in the tree.
        """
        index = self._index(account_id)
        path = []
        position = index
        for level in self._levels[:-1]:
            sibling = position ^ 1
            if sibling < len(level):  # else this node is carried up and has no sibling here
                path.append(level[sibling])
            position >>= 1
        assert position == 0
        assert len(path) < len(self._levels)
        return AccountProof(
            account_id=account_id,
            balance=self._balances[index],
            index=index,
            size=self.size,
            path=tuple(path),
        )
