"""GET /v1/accounts/{id}/transactions (issues 8 and 9): an account's statement of a height
range, ascending, one line per applied transaction that moves it, with its running balance;
each remittance opened only where this node is a recipient."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node.api import ApiSettings, build_api
from node.protocol import SyncBlocks
from node.statement import STATEMENT_LIMIT_MAX
from node.tx import decode_tx
from tests.unit.api_support import SignedClient, node_api_context
from tests.unit.ledger_support import CHAIN_ID, issue, payout, transfer
from tests.unit.test_driver import Node, certified_chain, hear, make_node, status_at

TEXT = "salary run 11/2026, client ACME LLC"


async def open_api(node: Node, settings: ApiSettings | None = None) -> SignedClient:
    context = node_api_context(node, remittance_key=True)
    return await SignedClient.open(build_api(context, settings), node.driver.node_id)


def hashes(*txs: bytes) -> list[str]:
    return [decode_tx(tx, CHAIN_ID).tx_hash.hex() for tx in txs]


# Settled at heights 1..4 on every node of the tests below; bank-e and bank-f start with
# 10_000 each (tests/unit/test_driver.py START).
TO_F = transfer("bank-e", "bank-e", "bank-f", 7, remittance=TEXT)
PLAIN = transfer("bank-f", "bank-f", "bank-e", 3)
TO_VAL = transfer("bank-e", "bank-e", "val-b", 2, remittance="invoice 9 for val-b")
PAYOUT = payout("bank-e", "bank-e", [("bank-f.savings", 4), ("val-b", 5)], remittance="bonus")
POOR = transfer("bank-f", "bank-f", "bank-e", 1_000_000)  # refused: insufficient funds
MINT = issue("nbkr", "bank-e", 50)
BLOCKS = {1: [TO_F], 2: [PLAIN, TO_VAL], 4: [PAYOUT, POOR, MINT]}


async def node_at(
    tmp_path: Path, node_id: str, settings: ApiSettings | None = None
) -> tuple[Node, SignedClient]:
    node = make_node(tmp_path, node_id)
    blocks = certified_chain(4, BLOCKS)
    hear(node, "val-b", status_at(blocks, 4))
    hear(node, "val-b", SyncBlocks(blocks=tuple(blocks)))
    assert node.driver.ledger.height == 4
    return node, await open_api(node, settings)


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


def lines(body: dict[str, Any]) -> list[tuple[str, int, int, str, int, int]]:
    """Each entry as (tx hash, height, index, direction, amount, balance after)."""
    return [
        (e["tx_hash"], e["height"], e["index"], e["direction"], e["amount"], e["balance_after"])
        for e in body["transactions"]
    ]


[TO_F_HASH, PLAIN_HASH, TO_VAL_HASH, PAYOUT_HASH, MINT_HASH] = hashes(
    TO_F, PLAIN, TO_VAL, PAYOUT, MINT
)
BANK_E_LINES = [
    (TO_F_HASH, 1, 0, "debit", 7, 9_993),
    (PLAIN_HASH, 2, 0, "credit", 3, 9_996),
    (TO_VAL_HASH, 2, 1, "debit", 2, 9_994),
    (PAYOUT_HASH, 4, 0, "debit", 9, 9_985),
    (MINT_HASH, 4, 2, "credit", 50, 10_035),  # POOR (4, 1) was refused: it moved nothing
]


async def test_the_receiving_bank_reads_its_statement_with_running_balance(
    bank_f: SignedClient,
) -> None:
    status, body = await statement(bank_f, "/v1/accounts/bank-f/transactions")
    assert status == 200
    assert (
        body
        | {
            "account": "bank-f",
            "from_height": 1,
            "to_height": 4,
            "next_from_height": None,
            "next_from_index": None,
        }
        == body
    )
    assert lines(body) == [
        (TO_F_HASH, 1, 0, "credit", 7, 10_007),
        (PLAIN_HASH, 2, 0, "debit", 3, 10_004),
    ]  # POOR, refused, moved nothing and is not listed
    to_f, plain = body["transactions"]
    assert "remittance" not in plain
    assert "remittance_status" not in plain
    assert plain["status"] == "final"
    assert isinstance(to_f.pop("time_ms"), int)
    assert isinstance(to_f.pop("uetr"), str)
    assert to_f == {
        "tx_hash": TO_F_HASH,
        "kind": "transfer",
        "status": "final",
        "height": 1,
        "index": 0,
        "signer": "bank-e",
        "from_account": "bank-e",
        "to_account": "bank-f",
        "direction": "credit",
        "amount": 7,
        "balance_after": 10_007,
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
    assert lines(body) == BANK_E_LINES
    by_hash = {e["tx_hash"]: e for e in body["transactions"]}
    assert by_hash[TO_VAL_HASH]["remittance_status"] == "sealed"  # bank-e paid val-b
    assert "remittance" not in by_hash[TO_VAL_HASH]
    paid = by_hash[PAYOUT_HASH]
    assert paid | {"remittance": "bonus", "kind": "payout", "legs": 2} == paid
    assert by_hash[MINT_HASH] | {"kind": "issue", "to_account": "bank-e"} == by_hash[MINT_HASH]
    _, savings = await statement(bank_f, "/v1/accounts/bank-f.savings/transactions")
    [credit] = savings["transactions"]
    assert (credit["kind"], credit["direction"], credit["amount"]) == ("payout", "credit", 4)
    assert credit["balance_after"] == 4


async def test_a_third_bank_sees_the_payments_but_no_remittance(tmp_path: Path) -> None:
    node, client = await node_at(tmp_path, "val-c")
    try:
        path = "/v1/accounts/bank-f/transactions"
        _, body = await statement(client, path, as_participant="nbkr")
        [to_f, _] = body["transactions"]
        assert (to_f["amount"], to_f["remittance_status"]) == (7, "sealed")
        assert "remittance" not in to_f
    finally:
        await client.close()
        node.store.close()


async def test_pages_follow_the_cursor_into_a_block_and_out_of_it(bank_f: SignedClient) -> None:
    """Two entries of bank-e sit at height 2 and two at height 4: a page of 2 stops inside
    a block, and next_from_index says where in it the next page starts."""
    path = "/v1/accounts/bank-e/transactions"
    cursors = []
    pages = []
    query = "limit=2"
    while True:
        status, body = await statement(bank_f, f"{path}?{query}", as_participant="nbkr")
        assert status == 200, body
        pages.append(lines(body))
        cursors.append((body["next_from_height"], body["next_from_index"]))
        if body["next_from_height"] is None:
            break
        query = f"limit=2&from_height={body['next_from_height']}"
        query += f"&from_index={body['next_from_index']}"
    assert cursors == [(2, 1), (4, 2), (None, None)]
    assert pages == [BANK_E_LINES[0:2], BANK_E_LINES[2:4], BANK_E_LINES[4:]]
    _, first = await statement(bank_f, f"{path}?limit=1", as_participant="nbkr")
    assert (first["next_from_height"], first["next_from_index"]) == (2, 0)  # a new block


async def test_a_height_range(bank_f: SignedClient) -> None:
    path = "/v1/accounts/bank-e/transactions"
    _, body = await statement(bank_f, f"{path}?from_height=2&to_height=3", as_participant="nbkr")
    assert (body["from_height"], body["to_height"]) == (2, 3)
    assert lines(body) == BANK_E_LINES[1:3]
    assert body["next_from_height"] is None
    _, body = await statement(bank_f, f"{path}?from_height=3&to_height=3", as_participant="nbkr")
    assert body["transactions"] == []
    _, body = await statement(bank_f, f"{path}?from_height=4", as_participant="nbkr")
    assert lines(body) == BANK_E_LINES[3:]
    _, body = await statement(bank_f, f"{path}?from_height=4&from_index=1", as_participant="nbkr")
    assert lines(body) == BANK_E_LINES[4:]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        f"limit={STATEMENT_LIMIT_MAX + 1}",
        "limit=x",
        "limit=-1",
        "from_height=0",
        "to_height=-1",
        "from_height=1.5",
        "to_height=",
        "from_index=-1",
        f"from_index={2**32}",
    ],
)
async def test_bad_queries_are_malformed(bank_f: SignedClient, query: str) -> None:
    status, error = await statement(bank_f, f"/v1/accounts/bank-f/transactions?{query}")
    assert (status, error["code"]) == (400, "MALFORMED"), error


async def test_a_range_past_the_settled_height_is_read_up_to_it(bank_f: SignedClient) -> None:
    """A client polling from the height after its last page gets an empty page."""
    path = "/v1/accounts/bank-f/transactions"
    status, whole = await statement(bank_f, path)
    assert status == 200
    status, clamped = await statement(bank_f, f"{path}?to_height=99")  # settled: 4
    assert (status, clamped) == (200, whole)
    for query in ("from_height=5", "from_height=3&to_height=2"):
        status, body = await statement(bank_f, f"{path}?{query}")
        assert status == 200, body
        assert (body["transactions"], body["next_from_height"]) == ([], None)


async def test_the_limit_is_the_configured_page_size(tmp_path: Path) -> None:
    node, client = await node_at(tmp_path, "bank-f", ApiSettings(page_items_max=2))
    try:
        status, body = await statement(client, "/v1/accounts/bank-f/transactions?limit=2")
        assert (status, len(body["transactions"])) == (200, 2)
        status, error = await statement(client, "/v1/accounts/bank-f/transactions?limit=3")
        assert (status, error["code"]) == (400, "MALFORMED")
    finally:
        await client.close()
        node.store.close()


async def test_unknown_and_quiet_accounts(bank_f: SignedClient) -> None:
    status, error = await statement(bank_f, "/v1/accounts/bank-x/transactions")
    assert (status, error["code"]) == (404, "UNKNOWN_ACCOUNT")
    _, quiet = await statement(bank_f, "/v1/accounts/val-d/transactions", as_participant="nbkr")
    assert quiet["transactions"] == []
    assert quiet["next_from_height"] is None
