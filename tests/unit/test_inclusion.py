"""Transaction inclusion proofs (node/inclusion.py): built from a real store of a real
certified chain, verified against genesis alone, and rejected with the right code for
each way a proof can be forged or damaged."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.crypto import Signer
from consensus.messages import CommitCertificate, ValidatorId, Vote, VoteType
from consensus.wire import decode_certificate, encode_certificate
from node.block import Block
from node.genesis import Genesis, parse_genesis
from node.inclusion import (
    PROOF_SIZE_MAX,
    ProofCode,
    ProofDocumentError,
    ProofRejected,
    ProofVerified,
    build_proof,
    decode_json,
    tx_summary,
    verify,
)
from node.ledger import Ledger
from node.store import Store
from node.tx import decode_tx
from tests.unit.ledger_support import (
    CHAIN_ID,
    VALIDATORS,
    Chain,
    certify,
    genesis_doc,
    issue,
    make_genesis,
    seed_of,
    transfer,
)
from tests.unit.test_driver import START

ALONE = transfer("bank-e", "bank-e", "bank-f", 1)
SECOND = [transfer("bank-f", "bank-f", "bank-e", n) for n in range(2, 6)]
POOR = transfer("bank-f", "bank-f", "bank-e", 1_000_000)  # refused: insufficient funds
MINT = issue("nbkr", "bank-e", 50)
TXS_AT = {1: [ALONE], 2: [*SECOND, POOR, MINT]}
HEIGHTS = 3
TARGET = SECOND[2]  # height 2, index 2 of 6
GENESIS = make_genesis(START)


def tx_hash_of(tx: bytes) -> bytes:
    return decode_tx(tx, CHAIN_ID).tx_hash


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Settled:
    store: Store
    blocks: list[tuple[Block, CommitCertificate]]  # by height - 1

    def block(self, height: int) -> Block:
        return self.blocks[height - 1][0]

    def certificate(self, height: int) -> bytes:
        return encode_certificate(self.blocks[height - 1][1])

    def proof(self, tx: bytes) -> dict[str, Any]:
        proof = build_proof(self.store, CHAIN_ID, tx_hash_of(tx))
        assert proof is not None
        return proof.to_document()


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settled]:
    """A store of a real certified chain, as a node keeps it."""
    chain = Chain(Ledger(GENESIS))
    path = tmp_path_factory.mktemp("inclusion") / "data"
    with Store.open(path, chain_id=CHAIN_ID, map_size_bytes=1 << 24) as store:
        for height in range(1, HEIGHTS + 1):
            store.commit_block(chain.settle(TXS_AT.get(height, [])))
        yield Settled(store=store, blocks=chain.blocks)


@pytest.fixture
def document(settled: Settled) -> dict[str, Any]:
    return settled.proof(TARGET)


def rejected(document: object, genesis: Genesis = GENESIS) -> ProofCode:
    result = verify(document, genesis)
    assert isinstance(result, ProofRejected), result
    assert result.message
    return result.code


def test_a_proof_of_a_settled_transaction_verifies_with_genesis_alone(
    settled: Settled, document: dict[str, Any]
) -> None:
    result = verify(json.loads(json.dumps(document)), GENESIS)  # through its JSON form
    assert isinstance(result, ProofVerified), result
    block = settled.block(2)
    assert (result.height, result.index) == (2, 2)
    assert result.tx_hash == tx_hash_of(TARGET)
    assert result.block_hash == block.header.hash()
    assert result.signers == tuple((ValidatorId(v), 1) for v in VALIDATORS[:3])
    assert (result.signed_power, result.total_power) == (3, 4)
    summary = tx_summary(result.tx)
    assert summary | {"uetr": ""} == {
        "kind": "transfer",
        "signer": "bank-f",
        "from": "bank-f",
        "to": "bank-e",
        "amount": 4,
        "uetr": "",
    }
    assert document["version"] == 2
    assert document["validator_changes"] == []  # the genesis set signs every block here
    assert document["header"] == block.header.encode().hex()
    assert document["certificate"] == settled.certificate(2).hex()


def test_every_applied_transaction_has_a_proof_and_a_refused_one_has_none(
    settled: Settled,
) -> None:
    for tx in [ALONE, *SECOND, MINT]:  # a block of one, and every index of a block of six
        assert isinstance(verify(settled.proof(tx), GENESIS), ProofVerified)
    assert build_proof(settled.store, CHAIN_ID, tx_hash_of(POOR)) is None
    assert build_proof(settled.store, CHAIN_ID, bytes(32)) is None


# ---------------------------------------------------------------------------------------
# One tampering, one code.


def flip(hex_text: str, index: int) -> str:
    data = bytearray(bytes.fromhex(hex_text))
    data[index] ^= 0x01
    return data.hex()


def with_certificate(document: dict[str, Any], certificate: CommitCertificate) -> dict[str, Any]:
    return document | {"certificate": encode_certificate(certificate).hex()}


def precommit(voter: str, certificate: CommitCertificate, seed: bytes | None = None) -> Vote:
    signer = Signer(CHAIN_ID, ValidatorId(voter), seed or seed_of(voter))
    return signer.sign_vote(
        VoteType.PRECOMMIT, certificate.height, certificate.round, certificate.value_id
    )


def certificate_of(document: dict[str, Any]) -> CommitCertificate:
    return decode_certificate(bytes.fromhex(document["certificate"]))


def test_a_changed_transaction_is_not_in_the_block(
    settled: Settled, document: dict[str, Any]
) -> None:
    # A flipped signature byte keeps the hash (it covers the signed bytes) but not the leaf.
    assert rejected(document | {"tx": flip(document["tx"], 0)}) is ProofCode.TX_NOT_IN_BLOCK
    # Another transaction's bytes under this hash; then with its own hash, at this index.
    other = SECOND[1]
    assert rejected(document | {"tx": other.hex()}) is ProofCode.TX_HASH_MISMATCH
    swapped = document | {"tx": other.hex(), "tx_hash": tx_hash_of(other).hex()}
    assert rejected(swapped) is ProofCode.TX_NOT_IN_BLOCK
    # A flipped byte of the signed bytes: no longer a canonical transaction, or another one.
    last = len(TARGET) - 1
    assert rejected(document | {"tx": flip(document["tx"], last)}) in (
        ProofCode.PROOF_MALFORMED,
        ProofCode.TX_HASH_MISMATCH,
    )


def test_a_changed_path_or_index_leads_elsewhere(document: dict[str, Any]) -> None:
    path = list(document["path"])
    for level in range(len(path)):
        changed = [*path[:level], flip(path[level], 31), *path[level + 1 :]]
        assert rejected(document | {"path": changed}) is ProofCode.TX_NOT_IN_BLOCK
    assert rejected(document | {"path": path[:-1]}) is ProofCode.TX_NOT_IN_BLOCK
    assert rejected(document | {"path": [*path, path[0]]}) is ProofCode.TX_NOT_IN_BLOCK
    assert rejected(document | {"path": path[::-1]}) is ProofCode.TX_NOT_IN_BLOCK
    for index in (0, 1, 3, 5, 6, 100):
        assert rejected(document | {"index": index}) is ProofCode.TX_NOT_IN_BLOCK


def test_a_header_of_another_height_is_refused(settled: Settled, document: dict[str, Any]) -> None:
    header_1 = settled.block(1).header.encode().hex()
    assert rejected(document | {"header": header_1}) is ProofCode.HEIGHT_MISMATCH
    moved = document | {"header": header_1, "height": 1}  # the certificate is still of 2
    assert rejected(moved) is ProofCode.TX_NOT_IN_BLOCK
    assert rejected(document | {"height": 3}) is ProofCode.HEIGHT_MISMATCH


def test_a_header_changed_in_any_field_loses_its_certificate(
    settled: Settled, document: dict[str, Any]
) -> None:
    header = settled.block(2).header
    later = dataclasses.replace(header, time_ms=header.time_ms + 1)
    assert rejected(document | {"header": later.encode().hex()}) is (
        ProofCode.CERTIFICATE_WRONG_BLOCK
    )


def test_a_certificate_of_another_block_is_refused(
    settled: Settled, document: dict[str, Any]
) -> None:
    for height in (1, 3):
        other = settled.certificate(height).hex()
        assert rejected(document | {"certificate": other}) is ProofCode.CERTIFICATE_WRONG_BLOCK
    # The right height and block, but a precommit of another block slipped in.
    certificate = certificate_of(document)
    elsewhere = dataclasses.replace(certificate, value_id=bytes(32))
    stray = dataclasses.replace(certificate, precommits=(precommit("val-d", elsewhere),))
    mixed = dataclasses.replace(
        certificate, precommits=(*certificate.precommits, *stray.precommits)
    )
    assert rejected(with_certificate(document, mixed)) is ProofCode.CERTIFICATE_WRONG_BLOCK
    # A prevote of the block is no precommit.
    prevote = Signer(CHAIN_ID, ValidatorId("val-d"), seed_of("val-d")).sign_vote(
        VoteType.PREVOTE, certificate.height, certificate.round, certificate.value_id
    )
    with_prevote = dataclasses.replace(certificate, precommits=(*certificate.precommits, prevote))
    assert rejected(with_certificate(document, with_prevote)) is (ProofCode.CERTIFICATE_WRONG_BLOCK)


def test_a_flipped_signature_is_refused(document: dict[str, Any]) -> None:
    certificate = certificate_of(document)
    first, *rest = certificate.precommits
    signature = bytes([first.signature[0] ^ 1]) + first.signature[1:]
    bad = dataclasses.replace(first, signature=signature)
    forged = dataclasses.replace(certificate, precommits=(bad, *rest))
    assert rejected(with_certificate(document, forged)) is ProofCode.CERTIFICATE_BAD_SIGNATURE
    # A validator's name on a precommit signed with another key.
    impostor = precommit("val-d", certificate, seed=seed_of("bank-e"))
    extra = dataclasses.replace(certificate, precommits=(*certificate.precommits, impostor))
    assert rejected(with_certificate(document, extra)) is ProofCode.CERTIFICATE_BAD_SIGNATURE


def test_a_signer_outside_the_genesis_validators_is_refused(document: dict[str, Any]) -> None:
    certificate = certificate_of(document)
    for outsider in ("mallory", "bank-e"):  # a stranger; a bank, which has no vote
        vote = precommit(outsider, certificate)
        extended = dataclasses.replace(certificate, precommits=(*certificate.precommits, vote))
        assert rejected(with_certificate(document, extended)) is ProofCode.UNKNOWN_VALIDATOR


def test_a_duplicated_signer_cannot_fake_a_quorum(
    settled: Settled, document: dict[str, Any]
) -> None:
    two = certify(settled.block(2), voters=VALIDATORS[:2])
    padded = dataclasses.replace(two, precommits=(*two.precommits, two.precommits[1]))
    assert len(padded.precommits) == 3  # would be a quorum if counted three times
    code = rejected(with_certificate(document, padded))
    assert code is ProofCode.CERTIFICATE_DUPLICATE_SIGNER


def test_too_few_signers_are_no_quorum(settled: Settled, document: dict[str, Any]) -> None:
    for voters in (VALIDATORS[:1], VALIDATORS[1:3]):
        weak = certify(settled.block(2), voters=voters)
        assert rejected(with_certificate(document, weak)) is ProofCode.CERTIFICATE_NO_QUORUM
    full = certify(settled.block(2), voters=VALIDATORS)
    assert isinstance(verify(with_certificate(document, full), GENESIS), ProofVerified)


def test_another_chains_genesis_or_validator_set_is_refused(document: dict[str, Any]) -> None:
    other_chain = genesis_doc(START) | {"chain_id": "som-other-1"}
    assert rejected(document, parse_genesis(json.dumps(other_chain))) is ProofCode.WRONG_CHAIN
    assert rejected(document | {"chain_id": "som-other-1"}) is ProofCode.WRONG_CHAIN
    # Same chain id, but the validators hold other powers: another network.
    heavier = genesis_doc(START)
    heavier["participants"][1]["voting_power"] = 5
    assert rejected(document, parse_genesis(json.dumps(heavier))) is ProofCode.WRONG_CHAIN


def replace_field(field: str, value: object) -> Callable[[dict[str, Any]], object]:
    return lambda document: document | {field: value}


def drop_field(field: str) -> Callable[[dict[str, Any]], object]:
    return lambda document: {k: v for k, v in document.items() if k != field}


@pytest.mark.parametrize(
    "damage",
    [
        lambda document: [document],
        lambda document: None,
        lambda document: "proof",
        replace_field("version", 1),
        replace_field("version", 3),
        drop_field("validator_changes"),
        replace_field("validator_changes", "00"),
        replace_field("validator_changes", [1]),
        replace_field("validator_changes", [{}]),
        replace_field("version", True),
        replace_field("version", "1"),
        drop_field("version"),
        drop_field("path"),
        replace_field("extra", 1),
        replace_field("chain_id", ""),
        replace_field("chain_id", 7),
        replace_field("height", 0),
        replace_field("height", True),
        replace_field("height", 2**63),
        replace_field("height", "2"),
        replace_field("index", -1),
        replace_field("path", "00"),
        replace_field("path", ["00"]),
        replace_field("path", [bytes(32).hex()] * 65),
        replace_field("tx_hash", bytes(31).hex()),
        replace_field("tx_hash", "AB" * 32),
        replace_field("tx", "0"),
        replace_field("tx", ""),
        replace_field("tx", " 00"),
        replace_field("header", "00"),
        replace_field("certificate", "90"),
        replace_field("certificate", "c0"),
    ],
)
def test_a_malformed_document_is_refused(
    document: dict[str, Any], damage: Callable[[dict[str, Any]], object]
) -> None:
    assert rejected(damage(document)) is ProofCode.PROOF_MALFORMED


def test_a_non_canonical_part_is_malformed(document: dict[str, Any]) -> None:
    # The same header fields, encoded with a wider integer: not the canonical bytes.
    header = bytes.fromhex(document["header"])
    assert rejected(document | {"header": (header + b"\x00").hex()}) is ProofCode.PROOF_MALFORMED
    certificate = bytes.fromhex(document["certificate"])
    widened = b"\xdc\x00\x04" + certificate[1:]  # array16 header instead of fixarray
    assert rejected(document | {"certificate": widened.hex()}) is ProofCode.PROOF_MALFORMED


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"\xff\xfe{}",
        b'{"version": 1.0}',
        b'{"version": NaN}',
        b'{"version": 1, "version": 1}',
        b"[" * 100_000 + b"]" * 100_000,
        b" " * (PROOF_SIZE_MAX + 1),
        b'{"height": ' + b"9" * 5000 + b"}",
    ],
)
def test_bytes_that_are_not_a_json_document(data: bytes) -> None:
    with pytest.raises(ProofDocumentError):
        decode_json(data)


def test_deep_nesting_is_refused_before_the_parser_recurses() -> None:
    """With the recursion limit py_ecc sets on import (100,000), json.loads of deep input
    overflows the C stack; the depth bound must hold whatever the limit."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        for deep in (b"[" * 50_000 + b"]" * 50_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
            with pytest.raises(ProofDocumentError, match="nested deeper"):
                decode_json(deep)
    finally:
        sys.setrecursionlimit(limit)
    text = json.dumps({"path": [["[[[[" * 100]], "note": "]]]}}}{{{" * 50})
    assert decode_json(text.encode()) == json.loads(text)  # brackets in strings do not count


# ---------------------------------------------------------------------------------------
# Hostile input: random damage never escapes as anything but a code.

CODES = set(ProofCode)


def outcome(document: object, original: ProofVerified) -> None:
    """Either the very same verdict (the damage changed nothing that counts), or a code."""
    result = verify(document, GENESIS)
    if isinstance(result, ProofVerified):
        assert result == original
    else:
        assert result.code in CODES
        assert result.message


HEX_FIELDS = ("tx_hash", "tx", "header", "certificate")


def is_hex(x: object) -> bool:
    return isinstance(x, str) and re.fullmatch("(?:[0-9a-f]{2})+", x) is not None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_damage_to_a_proof_is_a_code_or_nothing(
    settled: Settled, data: st.DataObject
) -> None:
    document = settled.proof(TARGET)
    original = verify(document, GENESIS)
    assert isinstance(original, ProofVerified)
    damaged = copy.deepcopy(document)
    for _ in range(data.draw(st.integers(1, 3), label="damages")):
        field = data.draw(st.sampled_from(sorted(damaged) or ["version"]), label="field")
        value = damaged.get(field)
        kind = data.draw(st.sampled_from(["bytes", "replace", "drop", "path"]), label="kind")
        if kind == "bytes" and field in HEX_FIELDS and value and is_hex(value):
            raw = bytearray(bytes.fromhex(value))
            position = data.draw(st.integers(0, max(len(raw) - 1, 0)), label="position")
            action = data.draw(st.sampled_from(["xor", "cut", "insert"]), label="action")
            if action == "xor" and raw:
                raw[position] ^= data.draw(st.integers(1, 255), label="mask")
            elif action == "cut":
                del raw[position:]
            else:
                raw[position:position] = data.draw(st.binary(min_size=1, max_size=4))
            damaged[field] = raw.hex()
        elif kind == "path" and field == "path" and value and all(map(is_hex, value)):
            position = data.draw(st.integers(0, len(value) - 1), label="node")
            value[position] = flip(value[position], data.draw(st.integers(0, 31)))
        elif kind == "drop":
            damaged.pop(field, None)
        else:
            damaged[field] = data.draw(json_values, label="value")
    outcome(damaged, original)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_damage_to_the_proof_file_is_a_code_or_not_json(
    settled: Settled, data: st.DataObject
) -> None:
    text = bytearray(json.dumps(settled.proof(TARGET)).encode())
    original = verify(decode_json(bytes(text)), GENESIS)
    assert isinstance(original, ProofVerified)
    for _ in range(data.draw(st.integers(1, 4), label="damages")):
        position = data.draw(st.integers(0, len(text) - 1), label="position")
        action = data.draw(st.sampled_from(["set", "cut", "insert"]), label="action")
        if action == "set":
            text[position] = data.draw(st.integers(0, 255), label="byte")
        elif action == "cut":
            del text[position : position + data.draw(st.integers(1, 64), label="length")]
        else:
            text[position:position] = data.draw(st.binary(min_size=1, max_size=8))
        if not text:
            text = bytearray(b"{}")
    try:
        document = decode_json(bytes(text))
    except ProofDocumentError:
        return
    outcome(document, original)
