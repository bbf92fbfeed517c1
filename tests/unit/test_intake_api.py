"""Through the HTTP API of a bank node (real driver, intake and store; fake peers): a
202 is kept before it is answered, every accepted transaction ends in a fate the API
tells, and the same bytes always get their first answer (issue 7, findings 4 to 6)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from consensus.crypto import Signer, verify_evidence
from consensus.messages import Evidence, Height, Round, ValidatorId, VoteType
from consensus.wire import decode_evidence, encode_evidence
from node.api import build_api
from node.intake import Intake
from node.protocol import Status, SyncBlocks, Txs, decode_payload
from node.tx import decode_tx
from tests.unit.api_support import SignedClient, node_api_context
from tests.unit.ledger_support import CHAIN_ID, make_genesis, new_uetr, seed_of, transfer
from tests.unit.test_driver import Node, certified_chain, hear, make_node, status_at


@dataclass
class Bank:
    node: Node
    intake: Intake
    client: SignedClient
    gossip: list[bytes]


async def open_bank(tmp_path: Path) -> Bank:
    node = make_node(tmp_path, "bank-e")
    gossip: list[bytes] = []
    context = node_api_context(node, broadcast=gossip.append)
    context.intake.restore()
    client = await SignedClient.open(build_api(context), "bank-e")
    return Bank(node=node, intake=context.intake, client=client, gossip=gossip)


@pytest.fixture
async def bank(tmp_path: Path) -> AsyncIterator[Bank]:
    opened = await open_bank(tmp_path)
    hear(
        opened.node, "nbkr", Status(height=0, certificate=b"")
    )  # a validator told it the chain's height
    yield opened
    await opened.client.close()
    opened.node.store.close()


async def submit(bank: Bank, tx: bytes) -> tuple[int, dict[str, Any]]:
    response = await bank.client.post(
        "/v1/transactions", data=tx, headers={"Content-Type": "application/octet-stream"}
    )
    return response.status, await response.json()


async def lookup(bank: Bank, tx_hash: bytes) -> tuple[int, dict[str, Any]]:
    response = await bank.client.get(f"/v1/transactions/{tx_hash.hex()}")
    return response.status, await response.json()


def settle_synced(bank: Bank, heights: int, txs_at: dict[int, list[bytes]]) -> None:
    blocks = certified_chain(heights, txs_at)
    hear(bank.node, "val-b", status_at(blocks, heights))
    hear(bank.node, "val-b", SyncBlocks(blocks=tuple(blocks)))
    assert bank.node.driver.ledger.height == heights


async def test_a_202_is_kept_in_the_store_before_it_is_answered_and_then_gossiped(
    bank: Bank,
) -> None:
    tx = transfer("bank-e", "bank-e", "bank-f", 1)
    status, body = await submit(bank, tx)
    assert (status, body["status"]) == (202, "pending")
    assert bank.node.store.load_pool() == [tx]
    [payload] = [decode_payload(p) for p in bank.gossip]
    assert payload == Txs(txs=(tx,))
    assert await submit(bank, tx) == (202, body)  # the same bytes: the same answer
    assert len(bank.gossip) == 1  # kept once, gossiped once


async def test_an_accepted_transfer_that_expires_unsettled_says_so_for_ever(bank: Bank) -> None:
    """Finding 5: an expired transaction went from pending to 404."""
    tx = transfer("bank-e", "bank-e", "bank-f", 1, expiry_height=2)
    tx_hash = decode_tx(tx, CHAIN_ID).tx_hash
    assert (await submit(bank, tx))[0] == 202
    settle_synced(bank, 2, {})
    expired = {"tx_hash": tx_hash.hex(), "status": "expired", "code": "EXPIRED", "height": 2}
    assert await lookup(bank, tx_hash) == (200, expired)
    assert await submit(bank, tx) == (200, expired)  # finding 6: its first answer again
    assert bank.node.store.load_pool() == []


async def test_an_accepted_transfer_whose_uetr_another_consumed_is_refused(bank: Bank) -> None:
    uetr = new_uetr()
    mine = transfer("bank-e", "bank-e", "bank-f", 1, uetr=uetr)
    theirs = transfer("bank-e", "bank-e", "bank-f", 2, uetr=uetr)  # signed elsewhere
    mine_hash, theirs_hash = (decode_tx(t, CHAIN_ID).tx_hash for t in (mine, theirs))
    assert (await submit(bank, mine))[0] == 202
    settle_synced(bank, 1, {1: [theirs]})
    status, body = await lookup(bank, mine_hash)
    assert (status, body["status"], body["code"]) == (200, "refused", "DUPLICATE")
    assert body["first_tx_hash"] == theirs_hash.hex()
    assert await submit(bank, mine) == (200, body)
    assert (await lookup(bank, theirs_hash))[1]["status"] == "final"


async def test_an_unknown_transaction_is_404_once_caught_up(bank: Bank) -> None:
    status, body = await lookup(bank, bytes(32))
    assert (status, body["code"]) == (404, "NOT_FOUND")


async def test_after_a_restart_kept_transactions_are_pending_again_and_regossiped(
    tmp_path: Path,
) -> None:
    first = await open_bank(tmp_path)
    hear(first.node, "nbkr", Status(height=0, certificate=b""))
    tx = transfer("bank-e", "bank-e", "bank-f", 1)
    assert (await submit(first, tx))[0] == 202
    await first.client.close()
    first.node.store.close()  # the process is gone; only the store remains
    again = await open_bank(tmp_path)
    try:
        assert [decode_payload(p) for p in again.gossip] == [Txs(txs=(tx,))]
        hear(again.node, "nbkr", Status(height=0, certificate=b""))
        status, body = await lookup(again, decode_tx(tx, CHAIN_ID).tx_hash)
        assert (status, body["status"]) == (200, "pending")
    finally:
        await again.client.close()
        again.node.store.close()


async def test_stored_evidence_is_served_and_verifies(bank: Bank) -> None:
    signer = Signer(CHAIN_ID, ValidatorId("val-b"), seed_of("val-b"))
    first, second = (
        signer.sign_vote(VoteType.PRECOMMIT, Height(3), Round(1), value_id)
        for value_id in (bytes(32), None)
    )
    assert bank.node.store.save_evidence(
        3, "val-b", encode_evidence(Evidence(first=first, second=second))
    )
    response = await bank.client.get("/v1/evidence?from_height=2")
    [item] = (await response.json())["evidence"]
    assert (item["height"], item["round"], item["type"], item["validator"]) == (
        3,
        1,
        "PRECOMMIT",
        "val-b",
    )
    evidence = decode_evidence(bytes.fromhex(item["evidence"]))
    assert verify_evidence(CHAIN_ID, evidence, make_genesis([]).validator_set())
    response = await bank.client.get("/v1/evidence?from_height=4")
    assert (await response.json())["evidence"] == []
    response = await bank.client.get("/v1/evidence?from_height=x")
    assert response.status == 400


async def test_a_bank_node_does_not_hold_other_participants_transactions(bank: Bank) -> None:
    """Issue 8 finding 4: transactions from peers sat in a bank node's pool for ever,
    since a bank node never proposes; now they never enter it."""
    tx = decode_tx(transfer("bank-f", "bank-f", "bank-e", 1), CHAIN_ID)
    assert not bank.intake.proposes
    assert bank.intake.admit_verified("bank-f", [tx]) == 1
    assert len(bank.node.driver.mempool) == 0
