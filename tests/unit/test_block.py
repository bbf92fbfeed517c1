"""Block encodings: round trips, limits, canonical form, hostile bytes."""

from __future__ import annotations

import dataclasses
import re

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.block import Block, decode_block, decode_block_header, decode_header, encode_block
from node.errors import BlockError
from node.ledger import Ledger
from tests.unit.ledger_support import Chain, make_genesis, transfer


def two_blocks() -> tuple[Block, Block]:
    chain = Chain(Ledger(make_genesis([("bank-e", 1_000)])))
    chain.settle([transfer("bank-e", "bank-e", "bank-f", 1)])
    second = chain.next_block([transfer("bank-e", "bank-e", "bank-f", n) for n in (2, 3)])
    return chain.blocks[0][0], second


def test_round_trip() -> None:
    for block in two_blocks():
        data = encode_block(block)
        assert decode_block(data) == block
        assert decode_header(block.header.encode()) == block.header
    first, second = two_blocks()
    assert first.prev_certificate is None
    assert second.prev_certificate is not None
    assert second.header.prev_block_hash == first.header.hash()


def test_header_is_read_without_the_transactions() -> None:
    for block in two_blocks():
        assert decode_block_header(encode_block(block)) == block.header
    big = dataclasses.replace(two_blocks()[1], txs=(b"x" * 70_000,))
    header = dataclasses.replace(big.header, tx_count=1)
    data = encode_block(dataclasses.replace(big, header=header))
    assert decode_block_header(data) == header
    for bad in (b"", b"\x93", b"\x93\xc4\x40abc", b"\x92\xc4\x01a", data[:20]):
        with pytest.raises(BlockError):
            decode_block_header(bad)


def test_block_hash_changes_with_every_header_field() -> None:
    _, block = two_blocks()
    header = block.header
    changed = [
        dataclasses.replace(header, chain_id="x"),
        dataclasses.replace(header, height=header.height + 1),
        dataclasses.replace(header, time_ms=header.time_ms + 1),
        dataclasses.replace(header, prev_block_hash=bytes(32)),
        dataclasses.replace(header, prev_certificate_hash=bytes(32)),
        dataclasses.replace(header, tx_root=bytes(32)),
        dataclasses.replace(header, tx_count=header.tx_count + 1),
        dataclasses.replace(header, app_hash=bytes(32)),
        dataclasses.replace(header, proposer="val-b"),
        dataclasses.replace(header, validator_set_hash=bytes(32)),
    ]
    assert len({h.hash() for h in changed} | {header.hash()}) == len(changed) + 1


def test_structural_errors() -> None:
    first, second = two_blocks()
    header, txs, certificate = msgpack.unpackb(encode_block(second))

    def pack(obj: object) -> bytes:
        packed = msgpack.packb(obj, use_bin_type=True)
        assert isinstance(packed, bytes)
        return packed

    cases = {
        "expected [header": pack([header, txs]),
        "count differs": pack([header, txs[:1], certificate]),
        "array of bytes": pack([header, ["tx", "tx"], certificate]),
        "expected the previous block's certificate": pack([header, txs, None]),
        "block certificate": pack([header, txs, b"\x90"]),
        "carries no certificate": pack([first.header.encode(), list(first.txs), certificate]),
        "header: expected a tagged array": pack([b"\x90", txs, certificate]),
        "malformed msgpack": encode_block(second)[:-5],
    }
    for message, data in cases.items():
        with pytest.raises(BlockError, match=re.escape(message)):
            decode_block(data)


def test_non_canonical_header_is_refused() -> None:
    _, block = two_blocks()
    encoded = block.header.encode()
    fields = msgpack.unpackb(encoded)
    assert fields[2] == 2  # the height, a positive fixint
    padded = msgpack.packb(fields[:2], use_bin_type=True)[1:]  # drop the array prefix
    array_prefix = encoded[:1]
    rest = msgpack.packb(fields[3:], use_bin_type=True)[1:]
    non_canonical = array_prefix + padded + b"\xcd\x00\x02" + rest  # height as uint16
    assert msgpack.unpackb(non_canonical) == fields
    with pytest.raises(BlockError, match="canonical"):
        decode_header(non_canonical)


def test_header_field_checks() -> None:
    _, block = two_blocks()
    fields = msgpack.unpackb(block.header.encode())
    for index, bad in [(2, 0), (3, -1), (4, b"short"), (7, 70_000), (9, ""), (1, 5)]:
        broken = list(fields)
        broken[index] = bad
        with pytest.raises(BlockError, match="header"):
            decode_header(msgpack.packb(broken, use_bin_type=True))


def test_oversized_input_is_refused_before_parsing() -> None:
    with pytest.raises(BlockError, match="at most"):
        decode_block(b"\x00" * (16 * 1024 * 1024 + 1))
    with pytest.raises(BlockError, match="at most"):
        decode_header(b"\x00" * 2000)


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_block_error(data: bytes) -> None:
    try:
        decode_block(data)
    except BlockError:
        pass


@settings(max_examples=200)
@given(st.data())
def test_mutated_blocks_raise_only_block_error(data: st.DataObject) -> None:
    _, block = two_blocks()
    raw = bytearray(encode_block(block))
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        decoded = decode_block(bytes(raw))
    except BlockError:
        return
    assert encode_block(decoded) == bytes(raw)  # whatever decodes is canonical
