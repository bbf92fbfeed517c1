"""A transaction's inclusion proof, and its offline verifier (issue 9, the bank API).

A proof lets a bank, an auditor or a court check that a transaction is in a finalized
block of the network holding nothing but the genesis file: no node, no network, no trust
in whoever handed the proof over. It carries

- the transaction's wire bytes and hash, its block's height and its index in the block;
- the RFC 6962 audit path from the transaction's leaf to the header's `tx_root`
  (node/merkle.py; the tree size is the header's `tx_count`, so it is not repeated);
- the block's encoded header, whose sha256 is the block hash (node/block.py);
- the block's commit certificate: precommits of validators for that block hash at that
  height (consensus/wire.py);
- the chain of validator-set changes from genesis to the block's height (issue 13), one
  entry per change of set: the new set's encoding and the header and certificate of the
  height before it. Each such header is certified by the set in force at its height and
  names the next height's set (`next_validator_set_hash`), as CometBFT's light client
  follows NextValidatorsHash: so a verifier holding genesis alone learns, change by
  change, the set that must certify the transaction's block, and trusts nothing else.

The proof document is JSON, bytes in lowercase hex, version 2:

    {"version": 2, "chain_id": "som-pilot-1", "tx_hash": "<64 hex>", "tx": "<hex>",
     "height": 12, "index": 3, "path": ["<64 hex>", ...], "header": "<hex>",
     "certificate": "<hex>",
     "validator_changes": [{"from_height": 7, "validators": "<hex>",
                            "header": "<hex of header 6>", "certificate": "<hex>"}, ...]}

A network whose set never changed has an empty `validator_changes`. A proof holds at most
VALIDATOR_CHANGES_MAX changes and PROOF_SIZE_MAX bytes (a change is about 4 KiB with 7
validators, about 56 KiB with 100); past either the node answers 409 PROOF_TOO_LONG rather
than serve a proof no verifier accepts. A chain with more changes needs a newer genesis (a
checkpoint), which this version does not have.

What a valid proof shows: the transaction was in a block that more than 2/3 of the voting
power of the validators in force at its height committed (genesis's, or those the chain
of changes leads to), so it is final and never reverted, provided that no set it passes
through ever had more than a third of its power faulty: that includes sets since retired.
Validators who left the set (or a key since rotated away) that together held more than
2/3 of an old set's power could certify a fork from their old height on, and a verifier
holding genesis alone cannot tell it from the chain (the long-range attack; CometBFT's
light client bounds it with a trusting period). Retired keys must stay destroyed; an
auditor who wants more checks the block hash against the network's anchors on BNB Smart
Chain (`somnet anchor verify`), which a fork does not have.

What it does not show: that the ledger applied it. A refused transaction sits in its block
too (its refusal is recorded in the ledger state, node/ledger.py). The API serves proofs of
applied transactions only, but a third party cannot tell that from the proof itself; the
effect on a balance is shown by the account proof (GET /v1/accounts/{id}/proof).

`verify(document, genesis)` trusts only genesis, and treats the document as hostile:
sizes are bounded before anything is decoded, every part goes through the node's own
bounded decoders (which accept only canonical encodings), and every failure is a
`ProofRejected` with a stable `ProofCode`, never another exception:

    PROOF_MALFORMED             not a version 2 proof document, or a part does not decode
    WRONG_CHAIN                 the proof, its header or its transaction is of another chain
                                id, or the header names another validator set than the one
                                genesis and the proof's changes lead to
    VALIDATOR_CHANGE_INVALID    a change of set is out of order, past the proof's height, or
                                its header is not at the height before it, does not name the
                                set trusted there, or does not name the new set as the next
    HEIGHT_MISMATCH             the header is not at the proof's height
    TX_HASH_MISMATCH            the transaction bytes do not hash to the proof's tx_hash
    TX_NOT_IN_BLOCK             the index and path do not lead from the transaction to the
                                header's tx_root
    CERTIFICATE_WRONG_BLOCK     the certificate, or one of its precommits, is not for this
                                header's block hash at this height
    UNKNOWN_VALIDATOR           a precommit is signed in the name of a non-validator
    CERTIFICATE_DUPLICATE_SIGNER  one validator's precommit appears twice (counted once, it
                                could fake a quorum)
    CERTIFICATE_BAD_SIGNATURE   a precommit's signature does not verify with its
                                validator's key
    CERTIFICATE_NO_QUORUM       the precommits' voting power is not more than 2/3 of the total

The CERTIFICATE_* codes and UNKNOWN_VALIDATOR apply to the certificate of a change of set
too (checked against the set trusted before it); the message names which.

The API (`GET /v1/transactions/{tx_hash}/proof`, `proof_answer`) answers:

    200                 the proof document, once the transaction is final and applied
    400 MALFORMED       the hash is not 64 hex digits
    404 NOT_FOUND       no such transaction in the mempool or the chain
    409 NOT_FINAL       the transaction is pending (in the mempool); ask again later
    409 REFUSED         the ledger refused it (the message names the refusal code), or
                        another transaction consumed its UETR: it never gets a proof
    409 EXPIRED         it expired unsettled: it never gets a proof
    409 PROOF_TOO_LONG  its proof would carry more changes of validator set, or more bytes,
                        than a verifier accepts (see above)
    503 CATCHING_UP     unknown here while the node is catching up with the network

409 rather than 404 for a known transaction without a proof: the transaction exists, and
a client that treats 404 as "never heard of it" would resubmit a pending payment.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, assert_never

from consensus.config import ValidatorSet
from consensus.crypto import verify_certificate, verify_vote
from consensus.errors import WireError
from consensus.messages import CommitCertificate, ValidatorId, VoteType
from consensus.wire import decode_certificate, decode_validator_set, encode_certificate
from node.block import (
    CERTIFICATE_SIZE_MAX,
    HASH_SIZE,
    HEADER_SIZE_MAX,
    HEIGHT_MAX,
    TXS_MAX,
    Header,
    decode_block,
    decode_block_header,
    decode_header,
)
from node.errors import BlockError, NodeError, RefusalCode, TxRefused
from node.genesis import Genesis
from node.governance import describe_action
from node.ids import ID_CHARS_MAX
from node.ledger import decode_tx_result
from node.mempool import decode_dropped
from node.merkle import PROOF_PATH_MAX, InclusionProof, inclusion_proof, root_from_proof
from node.merkle import verify_inclusion as merkle_verify_inclusion
from node.store import Store, StoreCorrupted
from node.tx import TX_SIZE_MAX, EvidenceTx, Govern, Issue, Payout, Redeem, Transfer, Tx, decode_tx

__all__ = [
    "PROOF_SIZE_MAX",
    "PROOF_VERSION",
    "ProofAnswer",
    "ProofCode",
    "ProofDocumentError",
    "ProofRejected",
    "ProofVerified",
    "TransactionProof",
    "build_proof",
    "decode_json",
    "proof_answer",
    "tx_summary",
    "verify",
]

PROOF_VERSION = 2
PROOF_FIELDS = frozenset(
    (
        "version",
        "chain_id",
        "tx_hash",
        "tx",
        "height",
        "index",
        "path",
        "header",
        "certificate",
        "validator_changes",
    )
)
CHANGE_FIELDS = frozenset(("from_height", "validators", "header", "certificate"))
VALIDATOR_CHANGES_MAX = 256
VALIDATOR_SET_SIZE_MAX = 16 * 1024  # 100 validators of a 64-character id, key and power
# The whole document is bounded before it is parsed, by the CLI and the API alike; each
# part is bounded again when it is read. 8 MiB holds the transaction's own parts and
# hundreds of changes of a small set.
PROOF_SIZE_MAX = 8 * 1024 * 1024
# A proof nests three deep (a change in a list in the object). The bound is checked before
# the JSON parser runs: it recurses on the C stack, and with the recursion limit some
# libraries set (py_ecc, imported with eth-account, sets 100,000) a deep [[[[...]]]]
# crashes the process instead of raising RecursionError (node/main.py restores the limit
# for the node).
DOCUMENT_DEPTH_MAX = 32
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")
_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_TX_HASH_HEX = re.compile(r"[0-9a-fA-F]{64}")


class ProofCode(enum.StrEnum):
    """Why a proof is rejected. Stable: the CLI prints them and scripts match on them."""

    PROOF_MALFORMED = "PROOF_MALFORMED"
    WRONG_CHAIN = "WRONG_CHAIN"
    HEIGHT_MISMATCH = "HEIGHT_MISMATCH"
    TX_HASH_MISMATCH = "TX_HASH_MISMATCH"
    TX_NOT_IN_BLOCK = "TX_NOT_IN_BLOCK"
    CERTIFICATE_WRONG_BLOCK = "CERTIFICATE_WRONG_BLOCK"
    UNKNOWN_VALIDATOR = "UNKNOWN_VALIDATOR"
    CERTIFICATE_DUPLICATE_SIGNER = "CERTIFICATE_DUPLICATE_SIGNER"
    CERTIFICATE_BAD_SIGNATURE = "CERTIFICATE_BAD_SIGNATURE"
    CERTIFICATE_NO_QUORUM = "CERTIFICATE_NO_QUORUM"
    VALIDATOR_CHANGE_INVALID = "VALIDATOR_CHANGE_INVALID"


class ProofDocumentError(NodeError):
    """The bytes handed over are not a JSON document of a bounded size at all."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidatorChange:
    """One change of validator set in a proof: `validators` (encoded) is in force from
    `from_height`; `header` and `certificate` are those of height from_height - 1."""

    from_height: int
    validators: bytes
    header: bytes
    certificate: bytes

    def to_document(self) -> dict[str, Any]:
        return {
            "from_height": self.from_height,
            "validators": self.validators.hex(),
            "header": self.header.hex(),
            "certificate": self.certificate.hex(),
        }


class _Invalid(Exception):
    """Raised inside verify; the one boundary (verify) turns it into ProofRejected."""

    def __init__(self, code: ProofCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionProof:
    """A proof's parts as bytes; `to_document` gives the JSON form (see the module doc)."""

    chain_id: str
    tx_hash: bytes
    tx: bytes  # wire bytes, the Merkle leaf
    height: int
    index: int  # position in the block
    path: tuple[bytes, ...]  # RFC 6962 audit path, leaf to root
    header: bytes  # the encoded header; sha256 of it is the block hash
    certificate: bytes  # the encoded commit certificate of the block
    validator_changes: tuple[ValidatorChange, ...]  # from genesis to `height`, ascending

    def to_document(self) -> dict[str, Any]:
        return {
            "version": PROOF_VERSION,
            "chain_id": self.chain_id,
            "tx_hash": self.tx_hash.hex(),
            "tx": self.tx.hex(),
            "height": self.height,
            "index": self.index,
            "path": [node.hex() for node in self.path],
            "header": self.header.hex(),
            "certificate": self.certificate.hex(),
            "validator_changes": [change.to_document() for change in self.validator_changes],
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_document(), indent=2).encode() + b"\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProofVerified:
    """What a valid proof establishes, for a human summary or a JSON report."""

    chain_id: str
    tx_hash: bytes
    tx: Tx
    height: int
    index: int
    block_hash: bytes
    time_ms: int  # the block proposer's clock
    signers: tuple[tuple[ValidatorId, int], ...]  # (validator, voting power), certificate order
    signed_power: int
    total_power: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProofRejected:
    code: ProofCode
    message: str


# ---------------------------------------------------------------------------------------
# Building a proof from a node's store, and the API's answer.


def build_proof(store: Store, chain_id: str, tx_hash: bytes) -> TransactionProof | None:
    """The proof of an applied transaction, or None if no block carries it or the ledger
    refused it (a refused transaction gets no proof; see the module doc).

    Raises:
        StoreCorrupted: the store names a block or certificate it does not hold, or a
            block whose transaction at the index is not this one.
    """
    data = store.load_tx_result(tx_hash)
    if data is None:
        return None
    result = decode_tx_result(data)
    if result.code is not None:
        return None
    block_bytes = store.load_block(result.height)
    certificate = store.load_certificate(result.height)
    if block_bytes is None or certificate is None:
        raise StoreCorrupted(f"tx {tx_hash.hex()}: no block or certificate at {result.height}")
    block = decode_block(block_bytes)
    if not 0 <= result.index < len(block.txs):
        raise StoreCorrupted(f"tx {tx_hash.hex()}: no index {result.index} at {result.height}")
    tx = block.txs[result.index]
    if decode_tx(tx, chain_id).tx_hash != tx_hash:
        raise StoreCorrupted(f"tx {tx_hash.hex()}: another transaction at its index")
    merkle = inclusion_proof(block.txs, result.index)
    changes = []
    for from_height, validators in store.load_validator_set_changes(result.height):
        header = store.load_block(from_height - 1)
        header_certificate = store.load_certificate(from_height - 1)
        if header is None or header_certificate is None:
            raise StoreCorrupted(f"no block or certificate before the set of {from_height}")
        change = ValidatorChange(
            from_height=from_height,
            validators=validators,
            header=decode_block_header(header).encode(),
            certificate=header_certificate,
        )
        changes.append(change)
    return TransactionProof(
        chain_id=chain_id,
        tx_hash=tx_hash,
        tx=tx,
        height=result.height,
        index=result.index,
        path=merkle.path,
        header=block.header.encode(),
        certificate=certificate,
        validator_changes=tuple(changes),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProofAnswer:
    """An HTTP status and its JSON body: the proof, or {"code": ..., "message": ...}."""

    status: int
    body: dict[str, Any]


def _error(status: int, code: str, message: str) -> ProofAnswer:
    return ProofAnswer(status=status, body={"code": code, "message": message})


def proof_answer(
    store: Store,
    chain_id: str,
    tx_hash_hex: str,
    *,
    in_mempool: Callable[[bytes], bool],
    caught_up: Callable[[], bool],
) -> ProofAnswer:
    """The API's answer to GET /v1/transactions/{tx_hash}/proof (statuses in the module
    doc). The store is read first: a settled transaction is final even if a stale copy
    is still on its way out of the mempool.

    Raises:
        StoreError: the store fails or is damaged (the API stops the node).
    """
    if not _TX_HASH_HEX.fullmatch(tx_hash_hex):
        return _error(400, "MALFORMED", "tx hash must be 64 hex digits")
    tx_hash = bytes.fromhex(tx_hash_hex)
    data = store.load_tx_result(tx_hash)
    if data is not None:
        result = decode_tx_result(data)
        if result.code is not None:
            message = f"refused with {result.code.name} at height {result.height}: no proof"
            return _error(409, "REFUSED", message)
        proof = build_proof(store, chain_id, tx_hash)
        assert proof is not None  # applied: a block and its certificate hold it
        changes = len(proof.validator_changes)
        if changes > VALIDATOR_CHANGES_MAX or len(proof.encode()) > PROOF_SIZE_MAX:
            message = (
                f"its proof carries {changes} changes of validator set: more than a "
                f"verifier accepts ({VALIDATOR_CHANGES_MAX} changes, {PROOF_SIZE_MAX} bytes)"
            )
            return _error(409, "PROOF_TOO_LONG", message)
        return ProofAnswer(status=200, body=proof.to_document())
    if in_mempool(tx_hash):
        return _error(409, "NOT_FINAL", "pending: not in a block yet; ask again later")
    dropped_data = store.load_dropped(tx_hash)
    if dropped_data is not None:
        dropped = decode_dropped(dropped_data)
        if dropped.code is RefusalCode.EXPIRED:
            return _error(409, "EXPIRED", f"expired unsettled at height {dropped.height}")
        message = f"refused with {dropped.code.name} at height {dropped.height}: no proof"
        return _error(409, "REFUSED", message)
    if not caught_up():
        message = "this node is catching up with the network and does not know it yet"
        return _error(503, RefusalCode.CATCHING_UP.name, message)
    return _error(404, "NOT_FOUND", "no such transaction in the mempool or the chain")


# ---------------------------------------------------------------------------------------
# Reading a proof document.


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:ID_CHARS_MAX]!r}")
        result[key] = value
    return result


def _reject_number(text: str) -> object:
    raise ValueError(f"not an integer: {text[:ID_CHARS_MAX]}")


def decode_json(data: bytes) -> object:
    """Parse a proof file's bytes as JSON, within PROOF_SIZE_MAX; floats, NaN and
    duplicate keys are refused here, the shape of the document by `verify`.

    Raises:
        ProofDocumentError: too large, not UTF-8, or not JSON.
    """
    if len(data) > PROOF_SIZE_MAX:
        raise ProofDocumentError(f"larger than {PROOF_SIZE_MAX} bytes: not a proof")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProofDocumentError(f"not UTF-8: {exc}") from exc
    if _nesting_depth(text) > DOCUMENT_DEPTH_MAX:
        raise ProofDocumentError(f"nested deeper than {DOCUMENT_DEPTH_MAX}: not a proof")
    try:
        return json.loads(
            text,
            object_pairs_hook=_reject_duplicate_keys,
            parse_float=_reject_number,
            parse_constant=_reject_number,
        )
    except ValueError as exc:
        raise ProofDocumentError(f"not JSON: {str(exc)[:200]}") from exc


def _nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects, brackets inside strings aside (an
    unterminated string only makes the count larger, and is no JSON anyway)."""
    depth = depth_max = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        depth_max = max(depth_max, depth)
    return depth_max


def _hex(x: object, field: str, size_max: int) -> bytes:
    """Lowercase hex only, so that one proof has one document."""
    if type(x) is not str or len(x) > 2 * size_max or not _HEX.fullmatch(x):
        message = f"{field}: expected lowercase hex of 0..{size_max} bytes"
        raise _Invalid(ProofCode.PROOF_MALFORMED, message)
    return bytes.fromhex(x)


def _integer(document: dict[str, Any], field: str, lo: int, hi: int) -> int:
    x = document[field]
    if type(x) is not int or not lo <= x <= hi:
        raise _Invalid(ProofCode.PROOF_MALFORMED, f"{field}: expected an integer in [{lo}, {hi}]")
    return x


def _proof_from_document(document: object) -> TransactionProof:
    """The proof's parts, each within its bound; not yet decoded or checked."""
    if type(document) is not dict:
        raise _Invalid(ProofCode.PROOF_MALFORMED, "expected a JSON object")
    version = document.get("version")
    if type(version) is not int or version != PROOF_VERSION:
        raise _Invalid(ProofCode.PROOF_MALFORMED, f"expected version {PROOF_VERSION}")
    if set(document) != PROOF_FIELDS:
        expected = ", ".join(sorted(PROOF_FIELDS))
        raise _Invalid(ProofCode.PROOF_MALFORMED, f"expected exactly the fields {expected}")
    chain_id = document["chain_id"]
    if type(chain_id) is not str or not 1 <= len(chain_id) <= ID_CHARS_MAX:
        raise _Invalid(ProofCode.PROOF_MALFORMED, "chain_id: expected text")
    path = document["path"]
    if type(path) is not list or len(path) > PROOF_PATH_MAX:
        raise _Invalid(ProofCode.PROOF_MALFORMED, f"path: expected 0..{PROOF_PATH_MAX} hashes")
    nodes = tuple(_hex(node, "path", HASH_SIZE) for node in path)
    if any(len(node) != HASH_SIZE for node in nodes):
        raise _Invalid(ProofCode.PROOF_MALFORMED, f"path: expected hashes of {HASH_SIZE} bytes")
    tx_hash = _hex(document["tx_hash"], "tx_hash", HASH_SIZE)
    if len(tx_hash) != HASH_SIZE:
        raise _Invalid(ProofCode.PROOF_MALFORMED, f"tx_hash: expected {HASH_SIZE} bytes")
    changes = document["validator_changes"]
    if type(changes) is not list or len(changes) > VALIDATOR_CHANGES_MAX:
        message = f"validator_changes: expected a list of 0..{VALIDATOR_CHANGES_MAX} changes"
        raise _Invalid(ProofCode.PROOF_MALFORMED, message)
    return TransactionProof(
        chain_id=chain_id,
        tx_hash=tx_hash,
        tx=_hex(document["tx"], "tx", TX_SIZE_MAX),
        height=_integer(document, "height", 1, HEIGHT_MAX),
        index=_integer(document, "index", 0, TXS_MAX - 1),
        path=nodes,
        header=_hex(document["header"], "header", HEADER_SIZE_MAX),
        certificate=_hex(document["certificate"], "certificate", CERTIFICATE_SIZE_MAX),
        validator_changes=tuple(_change_from_document(change) for change in changes),
    )


def _change_from_document(change: object) -> ValidatorChange:
    if type(change) is not dict or set(change) != CHANGE_FIELDS:
        expected = ", ".join(sorted(CHANGE_FIELDS))
        raise _Invalid(ProofCode.PROOF_MALFORMED, f"a validator change has exactly {expected}")
    return ValidatorChange(
        from_height=_integer(change, "from_height", 2, HEIGHT_MAX),
        validators=_hex(change["validators"], "validators", VALIDATOR_SET_SIZE_MAX),
        header=_hex(change["header"], "header", HEADER_SIZE_MAX),
        certificate=_hex(change["certificate"], "certificate", CERTIFICATE_SIZE_MAX),
    )


def _decode_header(data: bytes, chain_id: str) -> Header:
    try:
        header = decode_header(data)
    except BlockError as exc:
        raise _Invalid(ProofCode.PROOF_MALFORMED, str(exc)) from exc
    if header.chain_id != chain_id:
        raise _Invalid(ProofCode.WRONG_CHAIN, f"a header of {header.chain_id!r}")
    return header


def _decode_certificate(data: bytes) -> CommitCertificate:
    try:
        certificate = decode_certificate(data)
    except WireError as exc:
        raise _Invalid(ProofCode.PROOF_MALFORMED, f"certificate: {exc}") from exc
    if encode_certificate(certificate) != data:
        raise _Invalid(ProofCode.PROOF_MALFORMED, "certificate: not the canonical encoding")
    return certificate


def _decode_parts(proof: TransactionProof, chain_id: str) -> tuple[Tx, Header, CommitCertificate]:
    """Each part through the node's own bounded decoder, which accepts only canonical
    bytes, so one proof has one encoding."""
    try:
        tx = decode_tx(proof.tx, chain_id)
    except TxRefused as exc:
        code = ProofCode.WRONG_CHAIN if exc.code is RefusalCode.WRONG_CHAIN else None
        raise _Invalid(code or ProofCode.PROOF_MALFORMED, f"tx: {exc.message}") from exc
    return tx, _decode_header(proof.header, chain_id), _decode_certificate(proof.certificate)


# ---------------------------------------------------------------------------------------
# Verifying.


def verify(document: object, genesis: Genesis) -> ProofVerified | ProofRejected:
    """Check a proof document (parsed JSON, `decode_json`) against genesis alone.

    Returns:
        ProofVerified with what the proof establishes, or ProofRejected with the first
        failure's stable code (see the module doc). Never raises on any document.
    """
    try:
        return _verify(_proof_from_document(document), genesis)
    except _Invalid as exc:
        return ProofRejected(code=exc.code, message=exc.message)


def _validators_at(proof: TransactionProof, genesis: Genesis) -> ValidatorSet:
    """The set in force at the proof's height: genesis's, then each change in turn, each
    accepted only from a header certified by the set trusted at its height."""
    chain_id = genesis.chain_id
    trusted, trusted_from = genesis.validator_set(), 1
    for change in proof.validator_changes:
        where = f"the change of set at height {change.from_height}"
        if not trusted_from < change.from_height <= proof.height:
            message = f"{where}: not after height {trusted_from} and at most {proof.height}"
            raise _Invalid(ProofCode.VALIDATOR_CHANGE_INVALID, message)
        header = _decode_header(change.header, chain_id)
        if header.height != change.from_height - 1:
            message = f"{where}: its header is at height {header.height}"
            raise _Invalid(ProofCode.VALIDATOR_CHANGE_INVALID, message)
        if header.validator_set_hash != trusted.hash():
            message = f"{where}: its header names another set than the one in force there"
            raise _Invalid(ProofCode.VALIDATOR_CHANGE_INVALID, message)
        try:
            validators = decode_validator_set(change.validators)
        except WireError as exc:
            raise _Invalid(ProofCode.PROOF_MALFORMED, f"{where}: {exc}") from exc
        if header.next_validator_set_hash != validators.hash():
            message = f"{where}: its header does not name this set as the next"
            raise _Invalid(ProofCode.VALIDATOR_CHANGE_INVALID, message)
        _check_certificate(chain_id, header, _decode_certificate(change.certificate), trusted)
        trusted, trusted_from = validators, change.from_height
    return trusted


def _check_certificate(
    chain_id: str, header: Header, certificate: CommitCertificate, validators: ValidatorSet
) -> tuple[tuple[ValidatorId, int], ...]:
    """The certificate's (signer, power), once it shows more than 2/3 of `validators`
    committed `header`'s block."""
    block_hash = header.hash()
    if certificate.height != header.height or certificate.value_id != block_hash:
        message = (
            f"a certificate of {certificate.value_id.hex()} at {certificate.height}, "
            f"not of the block at {header.height}"
        )
        raise _Invalid(ProofCode.CERTIFICATE_WRONG_BLOCK, message)
    signers = _check_precommits(chain_id, certificate, validators)
    signed_power = sum(power for _, power in signers)
    if signed_power < validators.quorum_power:
        message = (
            f"precommits at height {header.height} of voting power {signed_power} of "
            f"{validators.total_power}; a commit needs {validators.quorum_power}"
        )
        raise _Invalid(ProofCode.CERTIFICATE_NO_QUORUM, message)
    # The walk above is the consensus rule spelled out for its error codes; the node's
    # one-line check must agree with it, or one of the two is our bug.
    assert verify_certificate(chain_id, certificate, validators)
    return signers


def _verify(proof: TransactionProof, genesis: Genesis) -> ProofVerified:
    chain_id = genesis.chain_id
    if proof.chain_id != chain_id:
        raise _Invalid(ProofCode.WRONG_CHAIN, f"a proof of {proof.chain_id!r}, not {chain_id!r}")
    tx, header, certificate = _decode_parts(proof, chain_id)
    if header.height != proof.height:
        message = f"the header is at height {header.height}, the proof at {proof.height}"
        raise _Invalid(ProofCode.HEIGHT_MISMATCH, message)
    validators = _validators_at(proof, genesis)
    if header.validator_set_hash != validators.hash():
        message = "the header names another validator set than genesis and the changes lead to"
        raise _Invalid(ProofCode.WRONG_CHAIN, message)
    if tx.tx_hash != proof.tx_hash:
        message = f"the transaction hashes to {tx.tx_hash.hex()}, not {proof.tx_hash.hex()}"
        raise _Invalid(ProofCode.TX_HASH_MISMATCH, message)
    merkle = InclusionProof(index=proof.index, size=header.tx_count, path=proof.path)
    if root_from_proof(proof.tx, merkle) != header.tx_root:
        message = f"index {proof.index} and path do not lead to the block's tx_root"
        raise _Invalid(ProofCode.TX_NOT_IN_BLOCK, message)
    signers = _check_certificate(chain_id, header, certificate, validators)
    signed_power = sum(power for _, power in signers)
    block_hash = header.hash()
    assert merkle_verify_inclusion(proof.tx, merkle, header, certificate, validators, chain_id)
    return ProofVerified(
        chain_id=chain_id,
        tx_hash=tx.tx_hash,
        tx=tx,
        height=header.height,
        index=proof.index,
        block_hash=block_hash,
        time_ms=header.time_ms,
        signers=signers,
        signed_power=signed_power,
        total_power=validators.total_power,
    )


def _check_precommits(
    chain_id: str, certificate: CommitCertificate, validators: ValidatorSet
) -> tuple[tuple[ValidatorId, int], ...]:
    """The (validator, power) of every precommit, each checked as
    consensus.crypto.verify_certificate does, naming the first that fails."""
    signers: list[tuple[ValidatorId, int]] = []
    for vote in certificate.precommits:
        member = validators.get(vote.voter)
        if member is None:
            message = f"{vote.voter!r} is no validator at height {certificate.height}"
            raise _Invalid(ProofCode.UNKNOWN_VALIDATOR, message)
        if any(voter == vote.voter for voter, _ in signers):
            message = f"{vote.voter!r} signed twice; each validator counts once"
            raise _Invalid(ProofCode.CERTIFICATE_DUPLICATE_SIGNER, message)
        position = (vote.height, vote.round, vote.value_id)
        if vote.vote_type is not VoteType.PRECOMMIT or position != (
            certificate.height,
            certificate.round,
            certificate.value_id,
        ):
            message = f"the vote of {vote.voter!r} is no precommit for this block and round"
            raise _Invalid(ProofCode.CERTIFICATE_WRONG_BLOCK, message)
        if not verify_vote(chain_id, vote, validators):
            message = f"the precommit of {vote.voter!r} does not verify with its key"
            raise _Invalid(ProofCode.CERTIFICATE_BAD_SIGNATURE, message)
        signers.append((vote.voter, member.voting_power))
    assert len(signers) == len(certificate.precommits)
    return tuple(signers)


def tx_summary(tx: Tx) -> dict[str, Any]:
    """The transaction's kind, signer and money movement, for reports."""
    summary: dict[str, Any] = {"signer": tx.signer, "uetr": tx.uetr.hex()}
    match tx:
        case Transfer():
            return summary | {
                "kind": "transfer",
                "from": tx.from_account,
                "to": tx.to_account,
                "amount": tx.amount,
            }
        case Issue():
            return summary | {"kind": "issue", "to": tx.to_account, "amount": tx.amount}
        case Redeem():
            return summary | {"kind": "redeem", "from": tx.from_account, "amount": tx.amount}
        case Payout():
            legs = [{"to": to, "amount": amount} for to, amount in tx.legs]
            return summary | {"kind": "payout", "from": tx.from_account, "legs": legs}
        case Govern():
            return summary | {"kind": "govern"} | describe_action(tx.action)
        case EvidenceTx():
            vote = tx.evidence.first
            return summary | {"kind": "evidence", "validator": vote.voter, "height": vote.height}
        case _:
            assert_never(tx)
