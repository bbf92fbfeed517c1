"""A small EVM JSON-RPC client over aiohttp: only the calls anchoring needs.

Every call has a deadline (`timeout_ms`) and a bound on the answer's size, so a slow or
hostile endpoint delays anchoring and nothing else. Two kinds of failure: the endpoint
cannot be reached or answers nonsense (`RpcUnavailable`), or it answers with a JSON-RPC
error object (`RpcCallError`, carrying the endpoint's own code and message).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import aiohttp

from node.errors import NodeError

__all__ = ["EvmRpc", "Receipt", "RpcCallError", "RpcError", "RpcUnavailable", "hex_int"]

RESPONSE_BYTES_MAX = 4 * 1024 * 1024  # a block without its transactions is a few KiB


class RpcError(NodeError):
    """An EVM JSON-RPC call failed."""


class RpcUnavailable(RpcError):
    """The endpoint did not answer in time, or not with JSON-RPC."""


class RpcCallError(RpcError):
    """The endpoint answered with a JSON-RPC error object."""

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"{method}: error {code}: {message}")
        self.code = code
        self.rpc_message = message


def hex_int(value: object, what: str) -> int:
    """A JSON-RPC quantity ("0x1a") as an int."""
    if not isinstance(value, str) or not value.startswith("0x"):
        raise RpcUnavailable(f"{what}: expected a hex quantity, got {str(value)[:80]!r}")
    try:
        return int(value, 16)
    except ValueError as exc:
        raise RpcUnavailable(f"{what}: expected a hex quantity, got {value[:80]!r}") from exc


def hex_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise RpcUnavailable(f"{what}: expected hex data, got {str(value)[:80]!r}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError as exc:
        raise RpcUnavailable(f"{what}: expected hex data, got {value[:80]!r}") from exc


class Receipt:
    """What anchoring reads from a transaction receipt."""

    __slots__ = ("block_hash", "block_number", "status", "tx_hash")

    def __init__(self, *, tx_hash: bytes, status: int, block_number: int, block_hash: bytes):
        self.tx_hash = tx_hash
        self.status = status
        self.block_number = block_number
        self.block_hash = block_hash


class EvmRpc:
    """JSON-RPC calls to one endpoint through one aiohttp session (owned by the caller)."""

    def __init__(self, url: str, *, timeout_ms: int, session: aiohttp.ClientSession) -> None:
        assert timeout_ms > 0
        self.url = url
        self._timeout_s = timeout_ms / 1000
        self._session = session
        self._ids = itertools.count(1)

    async def call(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call; its `result`.

        Raises:
            RpcUnavailable: no answer within the deadline, an HTTP error, or not JSON-RPC.
            RpcCallError: the endpoint's error object.
        """
        request = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._session.post(self.url, json=request) as response:
                    body = await _read_bounded(response)
                    status = response.status
        except TimeoutError as exc:
            raise RpcUnavailable(
                f"{method}: {self.url} did not answer within {self._timeout_s:g}s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise RpcUnavailable(f"{method}: cannot reach {self.url}: {exc}") from exc
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise RpcUnavailable(f"{method}: HTTP {status}, not JSON") from exc
        if not isinstance(document, dict):
            raise RpcUnavailable(f"{method}: HTTP {status}, not a JSON-RPC object")
        failure = document.get("error")
        if isinstance(failure, dict):
            code = failure.get("code")
            raise RpcCallError(
                method, code if isinstance(code, int) else 0, str(failure.get("message"))[:300]
            )
        if status != 200 or "result" not in document:
            raise RpcUnavailable(f"{method}: HTTP {status} without a result")
        return document["result"]

    async def chain_id(self) -> int:
        return hex_int(await self.call("eth_chainId", []), "eth_chainId")

    async def block_number(self, tag: str) -> int | None:
        """The number of the block named by `tag` ("latest", "finalized"), None if none."""
        block = await self.call("eth_getBlockByNumber", [tag, False])
        if block is None:
            return None
        if not isinstance(block, dict):
            raise RpcUnavailable(f"eth_getBlockByNumber({tag}): not a block")
        return hex_int(block.get("number"), "block number")

    async def block_hash_at(self, number: int) -> bytes | None:
        block = await self.call("eth_getBlockByNumber", [hex(number), False])
        if block is None:
            return None
        if not isinstance(block, dict):
            raise RpcUnavailable(f"eth_getBlockByNumber({number}): not a block")
        return hex_bytes(block.get("hash"), "block hash")

    async def receipt(self, tx_hash: bytes) -> Receipt | None:
        """The receipt of a transaction that is in a block, None otherwise."""
        found = await self.call("eth_getTransactionReceipt", ["0x" + tx_hash.hex()])
        if found is None:
            return None
        if not isinstance(found, dict):
            raise RpcUnavailable("eth_getTransactionReceipt: not a receipt")
        if found.get("blockNumber") is None:
            return None  # some endpoints answer pending transactions with a partial receipt
        return Receipt(
            tx_hash=tx_hash,
            status=hex_int(found.get("status"), "receipt status"),
            block_number=hex_int(found.get("blockNumber"), "receipt block number"),
            block_hash=hex_bytes(found.get("blockHash"), "receipt block hash"),
        )

    async def transaction(self, tx_hash: bytes) -> dict[str, Any] | None:
        found = await self.call("eth_getTransactionByHash", ["0x" + tx_hash.hex()])
        if found is not None and not isinstance(found, dict):
            raise RpcUnavailable("eth_getTransactionByHash: not a transaction")
        return found


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > RESPONSE_BYTES_MAX:
            raise RpcUnavailable(f"answer over {RESPONSE_BYTES_MAX} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
