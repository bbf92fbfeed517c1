"""Blocks: a header, the transactions' wire bytes, and the previous block's certificate.

The block hash is sha256 of the canonical header encoding (its first field is a domain
tag) and is the consensus `value_id` of the block. The header binds everything else in
the block: `tx_root` and `tx_count` bind the transactions (node.merkle), and
`prev_certificate_hash` binds the certificate of the previous block, so two blocks with
one hash have the same bytes.

Wire format, a canonical msgpack array: [header bytes, [tx bytes, ...], previous
certificate bytes or nil]. `decode_block` checks form and limits only and raises nothing
but `BlockError`; whether the block fits the chain is `Ledger.validate_block`'s question.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgpack

from consensus.errors import WireError
from consensus.messages import CommitCertificate
from consensus.wire import decode_certificate, encode_certificate
from node.errors import BlockError
from node.tx import TX_SIZE_MAX

__all__ = [
    "BLOCK_SIZE_MAX",
    "HASH_SIZE",
    "TXS_MAX",
    "ZERO_HASH",
    "Block",
    "Header",
    "certificate_hash",
    "decode_block",
    "decode_block_header",
    "decode_header",
    "encode_block",
]

HASH_SIZE = 32
ZERO_HASH = bytes(HASH_SIZE)  # the "previous" hashes of the block at height 1
TXS_MAX = 65_536
BLOCK_SIZE_MAX = 16 * 1024 * 1024  # equals consensus.wire.PAYLOAD_SIZE_MAX
HEADER_SIZE_MAX = 1024
CERTIFICATE_SIZE_MAX = 64 * 1024  # 100 precommits of about 200 bytes
ID_CHARS_MAX = 64
HEIGHT_MAX = 2**63 - 1
TAG_HEADER = b"somnet/block-header/v1"
assert TX_SIZE_MAX < BLOCK_SIZE_MAX
assert CERTIFICATE_SIZE_MAX < BLOCK_SIZE_MAX


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    chain_id: str
    height: int
    time_ms: int  # the proposer's clock, milliseconds since the Unix epoch
    prev_block_hash: bytes  # ZERO_HASH at height 1
    prev_certificate_hash: bytes  # sha256 of the carried certificate; ZERO_HASH at height 1
    tx_root: bytes  # RFC 6962 Merkle root of the transactions' wire bytes
    tx_count: int
    app_hash: bytes  # application hash after the previous block
    proposer: str
    validator_set_hash: bytes  # sha256 of the set in force at this height (its encoding)
    # ...and of the set in force at the next one: known here, since a change decided in
    # block h is in force from h+2. It lets anyone holding this height's set follow a
    # change of set from one certified header (node/inclusion.py).
    next_validator_set_hash: bytes

    def encode(self) -> bytes:
        return _pack(
            [
                TAG_HEADER,
                self.chain_id,
                self.height,
                self.time_ms,
                self.prev_block_hash,
                self.prev_certificate_hash,
                self.tx_root,
                self.tx_count,
                self.app_hash,
                self.proposer,
                self.validator_set_hash,
                self.next_validator_set_hash,
            ]
        )

    def hash(self) -> bytes:
        """The block hash: the consensus value_id of the block."""
        return hashlib.sha256(self.encode()).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    header: Header
    txs: tuple[bytes, ...]  # signed transactions, wire bytes (node.tx)
    prev_certificate: CommitCertificate | None  # None exactly at height 1


def certificate_hash(certificate: CommitCertificate | None) -> bytes:
    if certificate is None:
        return ZERO_HASH
    return hashlib.sha256(encode_certificate(certificate)).digest()


def _pack(obj: object) -> bytes:
    packed = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


# How the encoded block grows with its transactions, for a builder that must stay within
# a size limit: each transaction costs its bytes plus at most a msgpack bin32 header, and
# the header (the count, the bin length of the encoded header) and the transaction array's
# own header grow by at most this much in all.
TX_FRAMING_BYTES_MAX = 5
BLOCK_GROWTH_BYTES_MAX = 16


def encode_block(block: Block) -> bytes:
    assert block.header.tx_count == len(block.txs)
    assert (block.prev_certificate is None) == (block.header.height == 1)
    cert = None if block.prev_certificate is None else encode_certificate(block.prev_certificate)
    return _pack([block.header.encode(), list(block.txs), cert])


def _unpack(data: bytes, what: str, array_max: int, bin_max: int) -> Any:
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_bin_len=bin_max,
            max_str_len=ID_CHARS_MAX * 4,
            max_array_len=array_max,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several types on hostile bytes; all mean one thing
        raise BlockError(f"{what}: malformed msgpack ({type(exc).__name__})") from exc


def _int(x: object, lo: int, hi: int, what: str) -> int:
    if type(x) is not int or not lo <= x <= hi:
        raise BlockError(f"header {what}: expected an integer in [{lo}, {hi}]")
    return x


def _hash(x: object, what: str) -> bytes:
    if type(x) is not bytes or len(x) != HASH_SIZE:
        raise BlockError(f"header {what}: expected {HASH_SIZE} bytes")
    return x


def _text(x: object, what: str) -> str:
    if type(x) is not str or not 1 <= len(x) <= ID_CHARS_MAX:
        raise BlockError(f"header {what}: expected text of 1..{ID_CHARS_MAX} characters")
    return x


def decode_header(data: bytes) -> Header:
    """Decode a header. Raises BlockError unless `data` is its canonical encoding."""
    if type(data) is not bytes or len(data) > HEADER_SIZE_MAX:
        raise BlockError(f"header: expected at most {HEADER_SIZE_MAX} bytes")
    f = _unpack(data, "header", 16, HASH_SIZE)
    if type(f) is not list or len(f) != 12 or f[0] != TAG_HEADER:
        raise BlockError("header: expected a tagged array of 12 fields")
    header = Header(
        chain_id=_text(f[1], "chain_id"),
        height=_int(f[2], 1, HEIGHT_MAX, "height"),
        time_ms=_int(f[3], 0, HEIGHT_MAX, "time_ms"),
        prev_block_hash=_hash(f[4], "prev_block_hash"),
        prev_certificate_hash=_hash(f[5], "prev_certificate_hash"),
        tx_root=_hash(f[6], "tx_root"),
        tx_count=_int(f[7], 0, TXS_MAX, "tx_count"),
        app_hash=_hash(f[8], "app_hash"),
        proposer=_text(f[9], "proposer"),
        validator_set_hash=_hash(f[10], "validator_set_hash"),
        next_validator_set_hash=_hash(f[11], "next_validator_set_hash"),
    )
    if header.encode() != data:
        raise BlockError("header: not the canonical encoding")
    return header


def decode_block_header(data: bytes) -> Header:
    """The header of an encoded block, without decoding its transactions (for stores and
    sync, which need the height and hash of large blocks). Raises BlockError."""
    if type(data) is not bytes:
        raise BlockError("block: expected bytes")
    if data[:2] == b"\x93\xc4":  # array of 3, then bin8 (a header is at most 1024 bytes)
        start, size = 3, data[2] if len(data) > 2 else 0
    elif data[:2] == b"\x93\xc5":  # array of 3, then bin16
        start, size = 4, int.from_bytes(data[2:4], "big")
    else:
        raise BlockError("block: expected an array of 3 that starts with the header bytes")
    if len(data) < start + size:
        raise BlockError("block: truncated header")
    return decode_header(data[start : start + size])


def decode_block(data: bytes) -> Block:
    """Decode a block's form and limits (not its validity on the chain).

    Raises:
        BlockError: anything malformed, oversized or non-canonical.
    """
    if type(data) is not bytes or len(data) > BLOCK_SIZE_MAX:
        raise BlockError(f"block: expected at most {BLOCK_SIZE_MAX} bytes")
    f = _unpack(data, "block", TXS_MAX, max(TX_SIZE_MAX, CERTIFICATE_SIZE_MAX))
    if type(f) is not list or len(f) != 3:
        raise BlockError("block: expected [header, transactions, certificate]")
    header = decode_header(f[0])
    txs = f[1]
    if type(txs) is not list or not all(type(tx) is bytes for tx in txs):
        raise BlockError("block: transactions must be an array of bytes")
    if len(txs) != header.tx_count:
        raise BlockError("block: transaction count differs from the header")
    certificate = _decode_prev_certificate(f[2], header)
    block = Block(header=header, txs=tuple(txs), prev_certificate=certificate)
    if encode_block(block) != data:
        raise BlockError("block: not the canonical encoding")
    return block


def _decode_prev_certificate(x: object, header: Header) -> CommitCertificate | None:
    if header.height == 1:
        if x is not None:
            raise BlockError("block: the block at height 1 carries no certificate")
        return None
    if type(x) is not bytes:
        raise BlockError("block: expected the previous block's certificate")
    try:
        certificate = decode_certificate(x)
    except WireError as exc:
        raise BlockError(f"block certificate: {exc}") from exc
    if encode_certificate(certificate) != x:
        raise BlockError("block certificate: not the canonical encoding")
    return certificate
