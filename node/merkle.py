"""Merkle trees over a block's transactions, RFC 6962 style (Certificate Transparency).

leaf hash = sha256(0x00 || data), node hash = sha256(0x01 || left || right); a tree of n
leaves splits at k, the largest power of two smaller than n. The 0x00/0x01 prefixes keep
a leaf from ever passing for an inner node. The empty tree hashes to sha256(b"").

An inclusion proof is the audit path of RFC 6962 section 2.1.1, checked with the
algorithm of RFC 9162 section 2.1.3.2, so any RFC-conformant verifier can check ours.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from consensus.config import ValidatorSet
from consensus.crypto import verify_certificate
from consensus.messages import CommitCertificate
from node.block import Header

__all__ = [
    "InclusionProof",
    "inclusion_proof",
    "leaf_hash",
    "merkle_root",
    "root_from_proof",
    "verify_inclusion",
]

HASH_SIZE = 32
PROOF_PATH_MAX = 64  # a tree of 2**64 leaves; far beyond any block


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two smaller than size (size >= 2)."""
    assert size >= 2
    return 1 << ((size - 1).bit_length() - 1)


def _root_of_hashes(hashes: Sequence[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return _node_hash(_root_of_hashes(hashes[:k]), _root_of_hashes(hashes[k:]))


def merkle_root(items: Sequence[bytes]) -> bytes:
    """The RFC 6962 Merkle tree hash of `items` (the transactions' wire bytes).

    Computed level by level, pairing neighbours and carrying an odd last node up
    unchanged: this gives the same tree as RFC 6962's recursive split at the largest
    power of two below n (both put the leftmost 2**k leaves in one complete subtree), in
    one pass over each level and without slicing. tests/unit/test_merkle.py checks it
    against the recursive definition and the RFC vectors.
    """
    if not items:
        return hashlib.sha256(b"").digest()
    sha256 = hashlib.sha256
    level = [sha256(b"\x00" + item).digest() for item in items]
    while len(level) > 1:
        odd = level[-1] if len(level) & 1 else None
        level = [
            sha256(b"\x01" + left + right).digest()
            for left, right in zip(level[0::2], level[1::2], strict=False)
        ]
        if odd is not None:
            level.append(odd)
    return level[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class InclusionProof:
    """Where a leaf sits and the sibling hashes from the leaf up to the root."""

    index: int
    size: int
    path: tuple[bytes, ...]


def _path(hashes: Sequence[bytes], index: int) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = _split(len(hashes))
    if index < k:
        return [*_path(hashes[:k], index), _root_of_hashes(hashes[k:])]
    return [*_path(hashes[k:], index - k), _root_of_hashes(hashes[:k])]


def inclusion_proof(items: Sequence[bytes], index: int) -> InclusionProof:
    """The audit path proving that items[index] is in the tree of `items`."""
    assert 0 <= index < len(items)
    path = _path([leaf_hash(item) for item in items], index)
    assert len(path) <= PROOF_PATH_MAX
    return InclusionProof(index=index, size=len(items), path=tuple(path))


def root_from_proof(data: bytes, proof: InclusionProof) -> bytes | None:
    """The root that `proof` implies for leaf `data`, or None if the proof is ill-formed
    (RFC 9162 2.1.3.2: walk the path, consuming one sibling per level)."""
    if not 0 <= proof.index < proof.size or len(proof.path) > PROOF_PATH_MAX:
        return None
    fn, sn = proof.index, proof.size - 1
    r = leaf_hash(data)
    for p in proof.path:
        if len(p) != HASH_SIZE or sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = _node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return None
    return r


def verify_inclusion(
    tx_bytes: bytes,
    proof: InclusionProof,
    header: Header,
    certificate: CommitCertificate,
    validator_set: ValidatorSet,
    chain_id: str,
) -> bool:
    """True if `tx_bytes` is in the block whose `header` the `certificate` commits.

    Needs nothing but these arguments: the certificate must name this header's hash at its
    height and carry more than 2/3 of the validator set's power in valid precommits, the
    header must name this validator set, and the Merkle path must lead to its tx_root.
    """
    if header.chain_id != chain_id or header.validator_set_hash != validator_set.hash():
        return False
    if certificate.height != header.height or certificate.value_id != header.hash():
        return False
    if proof.size != header.tx_count or root_from_proof(tx_bytes, proof) != header.tx_root:
        return False
    return verify_certificate(chain_id, certificate, validator_set)
