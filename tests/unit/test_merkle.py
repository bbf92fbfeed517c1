"""RFC 6962 Merkle trees and the stand-alone inclusion verifier."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from consensus.config import Validator, ValidatorSet
from consensus.messages import ValidatorId
from node.ledger import Ledger
from node.merkle import (
    InclusionProof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    root_from_proof,
    verify_inclusion,
)
from tests.unit.ledger_support import (
    CHAIN_ID,
    VALIDATORS,
    Chain,
    certify,
    make_genesis,
    transfer,
)

# Certificate Transparency's reference vectors (certificate-transparency-go, merkle tests):
# leaves and the tree hash of the first n of them.
CT_LEAVES = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_reference_vectors() -> None:
    leaves = [bytes.fromhex(h) for h in CT_LEAVES]
    for n in range(1, len(leaves) + 1):
        assert merkle_root(leaves[:n]).hex() == CT_ROOTS[n - 1]
    assert merkle_root([]) == hashlib.sha256(b"").digest()


def rfc6962_root(items: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, literally: split at the largest power of two below n."""
    if len(items) == 1:
        return hashlib.sha256(b"\x00" + items[0]).digest()
    k = 1 << ((len(items) - 1).bit_length() - 1)
    left, right = rfc6962_root(items[:k]), rfc6962_root(items[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


@pytest.mark.parametrize("size", [*range(1, 70), 127, 128, 129, 1000, 4097])
def test_level_by_level_root_matches_the_recursive_definition(size: int) -> None:
    items = [i.to_bytes(4, "big") * (i % 3) for i in range(size)]
    assert merkle_root(items) == rfc6962_root(items)


def test_leaf_and_node_are_domain_separated() -> None:
    a, b = b"a", b"b"
    inner = hashlib.sha256(b"\x01" + leaf_hash(a) + leaf_hash(b)).digest()
    assert merkle_root([a, b]) == inner
    assert merkle_root([leaf_hash(a) + leaf_hash(b)]) != inner


def test_proofs_for_every_size_and_index() -> None:
    for size in range(1, 66):
        items = [f"tx-{size}-{i}".encode() for i in range(size)]
        root = merkle_root(items)
        for index in range(size):
            proof = inclusion_proof(items, index)
            assert root_from_proof(items[index], proof) == root
            wrong_leaf = (index + 1) % size
            if size > 1:
                assert root_from_proof(items[wrong_leaf], proof) != root
                moved = dataclasses.replace(proof, index=wrong_leaf)
                assert root_from_proof(items[index], moved) != root


def test_tampered_proofs_fail() -> None:
    items = [bytes([i]) for i in range(13)]
    root = merkle_root(items)
    proof = inclusion_proof(items, 6)
    for level in range(len(proof.path)):
        path = list(proof.path)
        path[level] = bytes([path[level][0] ^ 1]) + path[level][1:]
        assert root_from_proof(items[6], dataclasses.replace(proof, path=tuple(path))) != root
    shorter = dataclasses.replace(proof, path=proof.path[:-1])
    assert root_from_proof(items[6], shorter) != root
    longer = dataclasses.replace(proof, path=(*proof.path, bytes(32)))
    assert root_from_proof(items[6], longer) is None
    # A size of another tree shape breaks the path. (Sizes of the same shape, such as 12
    # here, imply the same root: the size is bound by the header, see verify_inclusion.)
    for size in (0, 6, 8, 100):
        assert root_from_proof(items[6], dataclasses.replace(proof, size=size)) != root
    assert root_from_proof(items[6], InclusionProof(index=6, size=13, path=(b"x",))) is None


def settled_chain() -> tuple[Chain, list[bytes]]:
    chain = Chain(Ledger(make_genesis([("bank-e", 1_000)])))
    txs = [transfer("bank-e", "bank-e", "bank-f", n) for n in range(1, 8)]
    chain.settle(txs)
    return chain, txs


def test_verify_inclusion_with_header_and_certificate() -> None:
    chain, txs = settled_chain()
    block, certificate = chain.blocks[0]
    vset = chain.ledger.validator_set
    for index, tx in enumerate(txs):
        proof = inclusion_proof(block.txs, index)
        assert verify_inclusion(tx, proof, block.header, certificate, vset, CHAIN_ID)
    proof = inclusion_proof(block.txs, 2)
    header = block.header
    assert not verify_inclusion(txs[3], proof, header, certificate, vset, CHAIN_ID)
    assert not verify_inclusion(txs[2], proof, header, certificate, vset, "som-other")
    resized = dataclasses.replace(proof, size=8)  # same path shape, but not this block's size
    assert root_from_proof(txs[2], resized) == header.tx_root
    assert not verify_inclusion(txs[2], resized, header, certificate, vset, CHAIN_ID)
    weak = certify(block, voters=VALIDATORS[:2])
    assert not verify_inclusion(txs[2], proof, header, weak, vset, CHAIN_ID)
    forged_header = dataclasses.replace(header, time_ms=header.time_ms + 1)
    assert not verify_inclusion(txs[2], proof, forged_header, certificate, vset, CHAIN_ID)
    other_set = ValidatorSet(
        tuple(
            Validator(
                validator_id=ValidatorId(v.validator_id), public_key=v.public_key, voting_power=2
            )
            for v in vset.validators
        )
    )
    assert not verify_inclusion(txs[2], proof, header, certificate, other_set, CHAIN_ID)


@pytest.mark.parametrize("size", [0, 1])
def test_small_blocks(size: int) -> None:
    items = [b"only"] * size
    if size:
        assert root_from_proof(b"only", inclusion_proof(items, 0)) == merkle_root(items)
        assert inclusion_proof(items, 0).path == ()
    else:
        assert merkle_root(items) == hashlib.sha256(b"").digest()
