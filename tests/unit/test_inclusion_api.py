"""GET /v1/transactions/{tx_hash}/proof (issue 9): the proof of a final transaction,
which verifies with genesis alone, and a stable code for every transaction without one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from node.inclusion import ProofVerified, verify
from node.protocol import SyncBlocks
from node.tx import decode_tx
from tests.unit.api_support import SignedClient
from tests.unit.ledger_support import CHAIN_ID, make_genesis, transfer
from tests.unit.test_driver import START, Node, certified_chain, hear, make_node, status_at
from tests.unit.test_statement_api import open_api

APPLIED = transfer("bank-e", "bank-e", "bank-f", 7)
POOR = transfer("bank-f", "bank-f", "bank-e", 1_000_000)  # refused: insufficient funds
BLOCKS = {2: [transfer("bank-f", "bank-f", "bank-e", 3), APPLIED, POOR]}


def hash_hex(tx: bytes) -> str:
    return decode_tx(tx, CHAIN_ID).tx_hash.hex()


async def get(client: SignedClient, tx_hash_hex: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(f"/v1/transactions/{tx_hash_hex}/proof")
    return response.status, await response.json()


async def synced(tmp_path: Path) -> tuple[Node, SignedClient]:
    node = make_node(tmp_path, "bank-e")
    blocks = certified_chain(3, BLOCKS)
    hear(node, "val-b", status_at(blocks, 3))
    hear(node, "val-b", SyncBlocks(blocks=tuple(blocks)))
    assert node.driver.ledger.height == 3
    return node, await open_api(node)


async def test_a_final_transaction_has_a_proof_that_verifies_offline(tmp_path: Path) -> None:
    node, client = await synced(tmp_path)
    try:
        status, body = await get(client, hash_hex(APPLIED))
        assert status == 200, body
        assert (body["version"], body["height"], body["index"]) == (2, 2, 1)
        result = verify(body, make_genesis(START))
        assert isinstance(result, ProofVerified), result
        assert result.tx_hash.hex() == hash_hex(APPLIED)
        status, upper = await get(client, hash_hex(APPLIED).upper())
        assert (status, upper) == (200, body)
    finally:
        await client.close()
        node.store.close()


async def test_no_proof_while_pending_refused_unknown_or_malformed(tmp_path: Path) -> None:
    node, client = await synced(tmp_path)
    try:
        status, body = await get(client, hash_hex(POOR))
        assert (status, body["code"]) == (409, "REFUSED")
        assert "INSUFFICIENT_FUNDS" in body["message"]
        pending = transfer("bank-e", "bank-e", "bank-f", 11)
        response = await client.post("/v1/transactions", data=pending)
        assert response.status == 202, await response.text()
        status, body = await get(client, hash_hex(pending))
        assert (status, body["code"]) == (409, "NOT_FINAL")
        status, body = await get(client, "ab" * 32)
        assert (status, body["code"]) == (404, "NOT_FOUND")
        for bad in ("ab" * 31, "zz" * 32, "ab" * 33, "%20" + "ab" * 31 + "a"):
            status, body = await get(client, bad)
            assert (status, body["code"]) == (400, "MALFORMED"), bad
    finally:
        await client.close()
        node.store.close()


async def test_an_unknown_transaction_while_catching_up(tmp_path: Path) -> None:
    node = make_node(tmp_path, "bank-e")  # has heard no validator: cannot judge
    client = await open_api(node)
    try:
        status, body = await get(client, "ab" * 32)
        assert (status, body["code"]) == (503, "CATCHING_UP")
    finally:
        await client.close()
        node.store.close()
