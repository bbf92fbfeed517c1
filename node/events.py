"""GET /v1/events: the finalized blocks as server-sent events (text/event-stream).

Theory of operation:
- One event per settled block, in height order, from the caller's start height on:
  `id: <height>`, `event: block`, and one `data:` line of JSON {height, block_hash,
  time_ms, tx_count, transactions}. `transactions` lists only what the caller may read
  (node/api.py: reads_tx); `tx_count` counts them all, as GET /v1/blocks does.
- The start is `Last-Event-ID` + 1 when the client resumes (EventSource sends it), else
  `from_height`, else the next block. A start beyond the chain waits for it.
- Blocks already settled come from the store in chunks of at most CHUNK_BLOCKS_MAX blocks
  (or CHUNK_BYTES_MAX bytes); each chunk is written with `await response.write`, which
  waits while the client reads slowly, and the loop serves others between chunks. Then
  the stream follows the chain, woken by each settled block (ApiContext.settled_once).
- An idle stream gets a `: keepalive` comment every KEEPALIVE_S, so that proxies keep it
  open; a client gone is noticed at the next write. When the node stops, the stream ends
  cleanly (ApiContext.close), so a client resumes elsewhere or later without a gap.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, assert_never

from aiohttp import web

from node.api_context import ApiContext
from node.block import decode_block
from node.governance import describe_action
from node.ledger import TxResult, decode_tx_result
from node.store import StoreError
from node.tx import EvidenceTx, Govern, Issue, Payout, Redeem, Transfer, Tx, decode_tx

__all__ = ["EventReader", "start_height", "stream_events"]

KEEPALIVE_S = 15.0
CHUNK_BLOCKS_MAX = 64
CHUNK_BYTES_MAX = 256 * 1024
HEIGHT_MAX = 2**63 - 1
HEIGHT_PATTERN = re.compile(r"[0-9]{1,19}")  # no sign, no spaces, no other digits
KEEPALIVE = b": keepalive\n\n"
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
}


@dataclass(frozen=True, slots=True, kw_only=True)
class EventReader:
    """What the caller may read (node/api.py's privacy rules, bound to the caller)."""

    reads_tx: Callable[[Tx], bool]
    reads_account: Callable[[str], bool]


def _height(text: str, what: str) -> int:
    if not HEIGHT_PATTERN.fullmatch(text) or not 0 <= int(text) <= HEIGHT_MAX:
        raise ValueError(f"{what} must be a decimal integer of 0..{HEIGHT_MAX}")
    return int(text)


def start_height(from_height: str | None, last_event_id: str | None, chain_height: int) -> int:
    """The first height to send: after Last-Event-ID if given (a client resuming), else
    from_height, else the next block.

    Raises:
        ValueError: from_height is not an integer of 1..2**63-1, or Last-Event-ID is
            not a height; the message is for the client.
    """
    first = chain_height + 1
    if from_height is not None:
        first = _height(from_height, "from_height")
        if first < 1:
            raise ValueError("from_height must be 1 or more")
    if last_event_id is not None:
        first = min(_height(last_event_id.strip(), "Last-Event-ID") + 1, HEIGHT_MAX)
    assert first >= 1
    return first


def event_tx(tx: Tx, result: TxResult, reader: EventReader) -> dict[str, Any]:
    """One transaction of a block event, as much of it as the caller may read."""
    entry: dict[str, Any] = {"tx_hash": tx.tx_hash.hex()}
    if result.code is None:
        entry["status"] = "final"
    else:
        entry |= {"status": "refused", "code": result.code.name}
    entry["kind"] = type(tx).__name__.lower()
    match tx:
        case Transfer():
            entry |= {"amount": tx.amount, "from_account": tx.from_account}
            entry["to_account"] = tx.to_account
        case Payout():
            # A recipient learns what its own accounts receive, not the other legs.
            whole = reader.reads_account(tx.from_account)
            mine = sum(amount for to, amount in tx.legs if reader.reads_account(to))
            entry |= {"amount": tx.total if whole else mine, "from_account": tx.from_account}
        case Issue():
            entry |= {"amount": tx.amount, "to_account": tx.to_account}
        case Redeem():
            entry |= {"amount": tx.amount, "from_account": tx.from_account}
        case Govern():
            entry |= describe_action(tx.action)
        case EvidenceTx():
            vote = tx.evidence.first
            entry |= {"kind": "evidence", "validator": vote.voter, "evidence_height": vote.height}
        case _:
            assert_never(tx)
    return entry


def block_event(context: ApiContext, reader: EventReader, height: int) -> bytes:
    """The encoded event of a settled block."""
    store = context.driver.store
    block_bytes = store.load_block(height)
    results = store.load_tx_results(height)
    assert block_bytes is not None  # every settled height is in the store
    assert results is not None
    block = decode_block(block_bytes)
    header = block.header
    assert header.height == height
    transactions = []
    for raw, (tx_hash, result) in zip(block.txs, results, strict=True):
        tx = decode_tx(raw, header.chain_id)
        assert tx.tx_hash == tx_hash
        if reader.reads_tx(tx):
            transactions.append(event_tx(tx, decode_tx_result(result), reader))
    data = {
        "height": height,
        "block_hash": header.hash().hex(),
        "time_ms": header.time_ms,
        "tx_count": len(block.txs),
        "transactions": transactions,
    }
    text = json.dumps(data, separators=(",", ":"))  # one line: no newline in JSON text
    return f"id: {height}\nevent: block\ndata: {text}\n\n".encode()


def settled_chunk(context: ApiContext, reader: EventReader, first: int, last: int) -> list[bytes]:
    """The events of heights first.. up to `last`, within the chunk's bounds."""
    assert first <= last
    events: list[bytes] = []
    size = 0
    for height in range(first, min(last, first + CHUNK_BLOCKS_MAX - 1) + 1):
        events.append(block_event(context, reader, height))
        size += len(events[-1])
        if size >= CHUNK_BYTES_MAX:
            break
    assert events
    return events


async def stream_events(
    request: web.Request, context: ApiContext, reader: EventReader, first: int
) -> web.StreamResponse:
    """Stream block events from height `first` until the client leaves or the node stops."""
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    written_at = loop.time()
    next_height = first
    try:
        while not context.closing:
            chain_height = context.driver.ledger.height
            if next_height <= chain_height:
                events = settled_chunk(context, reader, next_height, chain_height)
                await response.write(b"".join(events))  # waits while the client is slow
                next_height += len(events)
                written_at = loop.time()
                await asyncio.sleep(0)  # the loop serves others between chunks
            elif loop.time() - written_at >= KEEPALIVE_S:
                await response.write(KEEPALIVE)
                written_at = loop.time()
            else:
                await context.settled_once(KEEPALIVE_S - (loop.time() - written_at))
    except ConnectionResetError:
        return response  # the client left; nothing more to send
    except StoreError as exc:
        # The node stops with its fatal status; the stream ends without an answer from it.
        context.on_store_failure(exc)
        return response
    await response.write_eof()
    return response
