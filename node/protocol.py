"""What nodes say to each other over an authenticated peer link.

Every payload is a msgpack array `[kind, body]`:
- CONSENSUS: a proposal or vote, encoded by consensus.wire (validators only).
- TXS: a batch of signed transactions (gossip from the node that admitted them).
- STATUS: the sender's settled height, so a node that is behind knows whom to ask.
- SYNC_REQUEST: [first height, count] of settled blocks wanted.
- SYNC_BLOCKS: [[block bytes, certificate bytes], ...] in height order.
`decode_payload` checks shape and bounds and raises `ProtocolError`; the contents (blocks,
certificates, transactions, votes) are checked by their own decoders.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgpack

from node.block import CERTIFICATE_SIZE_MAX
from node.errors import NodeError

__all__ = [
    "SYNC_BLOCKS_MAX",
    "Consensus",
    "Kind",
    "Payload",
    "ProtocolError",
    "Status",
    "SyncBlocks",
    "SyncRequest",
    "Txs",
    "decode_payload",
    "encode_payload",
]

SYNC_BLOCKS_MAX = 256
TXS_PER_PAYLOAD_MAX = 10_000
PAYLOAD_BYTES_MAX = 64 * 1024 * 1024
HEIGHT_MAX = 2**63 - 1


class ProtocolError(NodeError):
    """A peer payload that does not have the shape of any message."""


class Kind(enum.IntEnum):
    CONSENSUS = 1
    TXS = 2
    STATUS = 3
    SYNC_REQUEST = 4
    SYNC_BLOCKS = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class Consensus:
    message: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Txs:
    txs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """A node's height, with the commit certificate that proves it (empty at height 0)."""

    height: int
    certificate: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncRequest:
    first_height: int
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncBlocks:
    blocks: tuple[tuple[bytes, bytes], ...]  # (block bytes, certificate bytes)


Payload = Consensus | Txs | Status | SyncRequest | SyncBlocks


def encode_payload(payload: Payload) -> bytes:
    body: object
    match payload:
        case Consensus():
            kind, body = Kind.CONSENSUS, payload.message
        case Txs():
            kind, body = Kind.TXS, payload.txs
        case Status():
            kind, body = Kind.STATUS, [payload.height, payload.certificate]
        case SyncRequest():
            kind, body = Kind.SYNC_REQUEST, [payload.first_height, payload.count]
        case SyncBlocks():
            kind, body = Kind.SYNC_BLOCKS, payload.blocks
    packed = msgpack.packb([int(kind), body], use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def _height(x: object) -> int:
    if type(x) is not int or not 0 <= x <= HEIGHT_MAX:
        raise ProtocolError("expected a height")
    return x


def _bytes_list(x: object, size_max: int) -> list[bytes]:
    if type(x) is not list or len(x) > size_max or not all(type(i) is bytes for i in x):
        raise ProtocolError(f"expected at most {size_max} byte strings")
    return x


def decode_payload(data: bytes) -> Payload:
    """Raises ProtocolError on anything but a well-formed payload."""
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            max_bin_len=PAYLOAD_BYTES_MAX,
            max_str_len=0,
            max_array_len=TXS_PER_PAYLOAD_MAX,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"malformed payload: {exc}") from exc
    if type(obj) is not list or len(obj) != 2 or type(obj[0]) is not int:
        raise ProtocolError("expected [kind, body]")
    kind, body = obj
    if kind == Kind.CONSENSUS and type(body) is bytes:
        return Consensus(message=body)
    if kind == Kind.TXS:
        return Txs(txs=tuple(_bytes_list(body, TXS_PER_PAYLOAD_MAX)))
    if kind == Kind.STATUS and type(body) is list and len(body) == 2:
        certificate = body[1]
        if type(certificate) is not bytes or len(certificate) > CERTIFICATE_SIZE_MAX:
            raise ProtocolError(f"status certificate: at most {CERTIFICATE_SIZE_MAX} bytes")
        return Status(height=_height(body[0]), certificate=certificate)
    if kind == Kind.SYNC_REQUEST and type(body) is list and len(body) == 2:
        count = body[1]
        if type(count) is not int or not 1 <= count <= SYNC_BLOCKS_MAX:
            raise ProtocolError(f"sync count must be 1..{SYNC_BLOCKS_MAX}")
        return SyncRequest(first_height=_height(body[0]), count=count)
    if kind == Kind.SYNC_BLOCKS and type(body) is list and len(body) <= SYNC_BLOCKS_MAX:
        pairs = [_bytes_list(pair, 2) for pair in body]
        if any(len(pair) != 2 for pair in pairs):
            raise ProtocolError("sync blocks: expected [block, certificate] pairs")
        return SyncBlocks(blocks=tuple((pair[0], pair[1]) for pair in pairs))
    raise ProtocolError(f"unknown kind {kind} or malformed body")
