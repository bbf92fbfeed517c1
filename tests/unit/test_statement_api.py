"""GET /v1/accounts/{id}/transactions (issue 8): the settled transactions touching an
account, newest first, each remittance opened only where this node is a recipient."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node.api import ApiContext, build_api
from node.intake import Intake
from node.protocol import SyncBlocks
from node.statement import STATEMENT_LIMIT_MAX
from node.tx import decode_tx
from tests.unit.api_support import SignedClient
from tests.unit.ledger_support import CHAIN_ID, issue, key_of, payout, transfer
from tests.unit.test_driver import Node, certified_chain, hear, make_node, status_at

TEXT = "salary run 11/2026, client ACME LLC"


async def open_api(node: Node) -> SignedClient:
    intake = Intake(
        mempool=node.driver.mempool,
        store=node.store,
        broadcast=lambda payload: None,
        wake=node.driver.note_transactions,
        caught_up=node.driver.caught_up,
        proposes=False,
    )
    context = ApiContext(
        driver=node.driver,
        intake=intake,
        role="bank",
        connected_peers=list,
        on_store_failure=pytest.fail,
        remittance_key=key_of(node.driver.node_id),
    )
    client = await SignedClient.open(build_api(context), node.driver.node_id)
    return client


def hashes(*txs: bytes) -> list[str]:
    return [decode_tx(tx, CHAIN_ID).tx_hash.hex() for tx in txs]


# Settled at heights 1..4 on every node of the tests below.
TO_F = transfer("bank-e", "bank-e", "bank-f", 7, remittance=TEXT)
PLAIN = transfer("bank-f", "bank-f", "bank-e", 3)
TO_VAL = transfer("bank-e", "bank-e", "val-b", 2, remittance="invoice 9 for val-b")
PAYOUT = payout("bank-e", "bank-e", [("bank-f.savings", 4), ("val-b", 5)], remittance="bonus")
POOR = transfer("bank-f", "bank-f", "bank-e", 1_000_000)  # refused: insufficient funds
MINT = issue("nbkr", "bank-e", 50)
BLOCKS = {1: [TO_F], 2: [PLAIN, TO_VAL], 4: [PAYOUT, POOR, MINT]}


async def node_at(tmp_path: Path, node_id: str) -> tuple[Node, SignedClient]:
    node = make_node(tmp_path, node_id)
    blocks = certified_chain(4, BLOCKS)
    hear(node, "val-b", status_at(blocks, 4))
    hear(node, "val-b", SyncBlocks(blocks=tuple(blocks)))
    assert node.driver.ledger.height == 4
    return node, await open_api(node)


@pytest.fixture
async def bank_f(tmp_path: Path) -> AsyncIterator[SignedClient]:
    node, client = await node_at(tmp_path, "bank-f")
    yield client
    await client.close()
    node.store.close()


async def statement(
    client: SignedClient, path: str, *, as_participant: str | None = None
) -> tuple[int, dict[str, Any]]:
    """GET `path` as the node's own participant, or as another one."""
    if as_participant is None:
        response = await client.get(path)
        return response.status, await response.json()
    async with client.as_participant(as_participant) as api:
        response = await api.request("GET", path)
        return response.status, await response.json()


async def test_the_receiving_bank_reads_its_remittances_newest_first(
    bank_f: SignedClient,
) -> None:
    status, body = await statement(bank_f, "/v1/accounts/bank-f/transactions")
    assert status == 200
    assert (body["account"], body["height"], body["from_height"]) == ("bank-f", 4, 1)
    entries = body["transactions"]
    assert [e["tx_hash"] for e in entries] == hashes(POOR, PLAIN, TO_F)
    poor, plain, to_f = entries
    assert (poor["status"], poor["code"], poor["direction"]) == (
        "refused",
        "INSUFFICIENT_FUNDS",
        "debit",
    )
    assert (plain["status"], plain["direction"], plain["amount"]) == ("final", "debit", 3)
    assert "remittance" not in plain
    assert "remittance_status" not in plain
    assert to_f == to_f | {
        "kind": "transfer",
        "status": "final",
        "height": 1,
        "index": 0,
        "signer": "bank-e",
        "from_account": "bank-e",
        "to_account": "bank-f",
        "direction": "credit",
        "amount": 7,
        "remittance_status": "opened",
        "remittance": TEXT,
    }


async def test_remittances_this_node_is_not_sealed_to_stay_sealed(
    bank_f: SignedClient,
) -> None:
    # Privacy: bank-f may not read bank-e's statement; the central bank (issuer) reads
    # it, at bank-f's node, which opens only the remittances sealed to bank-f.
    status, body = await statement(bank_f, "/v1/accounts/bank-e/transactions")
    assert (status, body["code"]) == (403, "FORBIDDEN"), body
    _, body = await statement(bank_f, "/v1/accounts/bank-e/transactions", as_participant="nbkr")
    by_hash = {e["tx_hash"]: e for e in body["transactions"]}
    assert list(by_hash) == hashes(MINT, POOR, PAYOUT, TO_VAL, PLAIN, TO_F)
    [to_val] = hashes(TO_VAL)
    assert by_hash[to_val]["remittance_status"] == "sealed"  # bank-e paid val-b: not ours
    assert "remittance" not in by_hash[to_val]
    [paid] = hashes(PAYOUT)
    assert by_hash[paid] | {"remittance": "bonus", "amount": 9, "legs": 2} == by_hash[paid]
    _, savings = await statement(bank_f, "/v1/accounts/bank-f.savings/transactions")
    [credit] = savings["transactions"]
    assert (credit["kind"], credit["direction"], credit["amount"]) == ("payout", "credit", 4)


async def test_a_third_bank_sees_the_payments_but_no_remittance(tmp_path: Path) -> None:
    node, client = await node_at(tmp_path, "val-c")
    try:
        path = "/v1/accounts/bank-f/transactions"
        _, body = await statement(client, path, as_participant="nbkr")
        [_, _, to_f] = body["transactions"]
        assert (to_f["amount"], to_f["remittance_status"]) == (7, "sealed")
        assert "remittance" not in to_f
    finally:
        await client.close()
        node.store.close()


async def test_limit_unknown_accounts_and_bad_queries(bank_f: SignedClient) -> None:
    _, body = await statement(bank_f, "/v1/accounts/bank-f/transactions?limit=2")
    assert [e["tx_hash"] for e in body["transactions"]] == hashes(POOR, PLAIN)
    _, body = await statement(
        bank_f, "/v1/accounts/bank-e/transactions?limit=2", as_participant="nbkr"
    )
    assert [e["tx_hash"] for e in body["transactions"]] == hashes(MINT, POOR)
    assert body["from_height"] == 4  # it stopped in the last block
    for limit in ("0", str(STATEMENT_LIMIT_MAX + 1), "x", "-1"):
        status, error = await statement(bank_f, f"/v1/accounts/bank-e/transactions?limit={limit}")
        assert (status, error["code"]) == (400, "MALFORMED")
    status, error = await statement(bank_f, "/v1/accounts/bank-x/transactions")
    assert (status, error["code"]) == (404, "UNKNOWN_ACCOUNT")
    _, quiet = await statement(bank_f, "/v1/accounts/val-d/transactions", as_participant="nbkr")
    assert quiet["transactions"] == []
