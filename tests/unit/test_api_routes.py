"""Issue 9's routes through the HTTP API of an in-process bank node (real driver, intake
and store; fake peers): the batch submission, blocks by height or hash, the validator
set, and the event stream with its resumption and privacy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest

from cli.api_client import ApiClient, ApiError, EventStreamParser
from node.api import ApiContext, ApiSettings, build_api
from node.api_auth import AuthLimits
from node.governance import Freeze, SetValidators, Suspend
from node.protocol import Status, SyncBlocks
from node.tx import decode_tx
from tests.unit.api_support import SignedClient, node_api_context
from tests.unit.ledger_support import (
    BANKS,
    CHAIN_ID,
    OFFICERS,
    VALIDATORS,
    govern,
    make_genesis,
    new_uetr,
    public_hex,
    transfer,
)
from tests.unit.test_driver import Node, certified_chain, hear, make_node, status_at

DEADLINE_S = 10.0


@dataclass
class Bank:
    node: Node
    context: ApiContext
    client: SignedClient


@pytest.fixture
async def bank(tmp_path: Path) -> AsyncIterator[Bank]:
    """The API of bank-e's node, with small limits: 3 items a batch, 1 wait at a time."""
    node = make_node(tmp_path, "bank-e")
    context = node_api_context(node)
    settings = ApiSettings(batch_txs_max=4, auth=AuthLimits(waits_max=1))
    client = await SignedClient.open(build_api(context, settings), "bank-e")
    yield Bank(node=node, context=context, client=client)
    await client.close()
    node.store.close()


def caught_up(bank: Bank) -> None:
    hear(bank.node, "nbkr", Status(height=0, certificate=b""))  # a validator's height


def settle(bank: Bank, blocks: list[tuple[bytes, bytes]], height: int) -> None:
    """Sync the bank node up to `height` of this certified chain."""
    first = bank.node.driver.ledger.height
    hear(bank.node, "val-b", status_at(blocks, height))
    hear(bank.node, "val-b", SyncBlocks(blocks=tuple(blocks[first:height])))
    assert bank.node.driver.ledger.height == height


def tx_hash_of(tx: bytes) -> str:
    return decode_tx(tx, CHAIN_ID).tx_hash.hex()


async def post_batch(bank: Bank, body: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
    response = await bank.client.api.request(
        "POST", "/v1/transactions/batch", body=body, content_type=content_type
    )
    async with response:
        return response.status, await response.json()


# -- POST /v1/transactions/batch ---------------------------------------------------------


async def test_a_batch_answers_each_item_in_order_and_keeps_all_in_one_store_write(
    bank: Bank,
) -> None:
    caught_up(bank)
    uetr = new_uetr()
    good = transfer("bank-e", "bank-e", "bank-f", 1, uetr=uetr)
    same_uetr = transfer("bank-e", "bank-e", "bank-f", 2, uetr=uetr)  # DUPLICATE
    not_its_account = transfer("bank-e", "bank-f", "bank-e", 1)  # bank-e spends bank-f's
    other_good = transfer("bank-e", "bank-e.payroll", "bank-f", 3)
    writes_before = bank.node.store.write_count
    items = [good, b"\x01not a transaction", good, same_uetr]
    results = await bank.client.api.submit_batch(items)
    assert bank.node.store.write_count == writes_before + 1
    assert results[0] == {"index": 0, "tx_hash": tx_hash_of(good), "status": "pending"}
    assert (results[1]["index"], results[1]["code"]) == (1, "MALFORMED")
    assert results[2] == {"index": 2, "tx_hash": tx_hash_of(good), "status": "pending"}
    assert (results[3]["index"], results[3]["code"]) == (3, "DUPLICATE")
    assert all(isinstance(r.get("message", ""), str) for r in results)
    assert bank.node.store.load_pool() == [good]

    writes_before = bank.node.store.write_count
    results = await bank.client.api.submit_batch([not_its_account, other_good, good])
    assert bank.node.store.write_count == writes_before + 1  # the new one; good was kept
    assert [r["index"] for r in results] == [0, 1, 2]
    assert results[0]["code"] == "NOT_AUTHORIZED"
    assert results[1] == {"index": 1, "tx_hash": tx_hash_of(other_good), "status": "pending"}
    assert results[2]["status"] == "pending"
    assert sorted(bank.node.store.load_pool()) == sorted([good, other_good])


async def test_a_batch_of_settled_bytes_gets_their_first_result(bank: Bank) -> None:
    tx = transfer("bank-e", "bank-e", "bank-f", 5)
    settle(bank, certified_chain(1, {1: [tx]}), 1)
    writes_before = bank.node.store.write_count
    [result] = await bank.client.api.submit_batch([tx])
    assert result == {"index": 0, "tx_hash": tx_hash_of(tx), "status": "final", "height": 1}
    assert bank.node.store.write_count == writes_before  # nothing new to keep


async def test_a_json_batch_is_the_same_as_msgpack(bank: Bank) -> None:
    caught_up(bank)
    tx = transfer("bank-e", "bank-e", "bank-f", 1)
    body = json.dumps({"txs": [tx.hex(), "00"]}).encode()
    status, document = await post_batch(bank, body, "application/json")
    assert status == 200
    assert document["results"][0] == {"index": 0, "tx_hash": tx_hash_of(tx), "status": "pending"}
    assert (document["results"][1]["index"], document["results"][1]["code"]) == (1, "MALFORMED")


async def test_a_batch_over_its_limit_or_malformed_is_refused_whole(bank: Bank) -> None:
    caught_up(bank)
    tx = transfer("bank-e", "bank-e", "bank-f", 1)
    too_many = [(msgpack.packb([tx] * 5), "application/msgpack")]
    too_many.append((msgpack.packb([tx] * 5000), "application/msgpack"))
    too_many.append((json.dumps({"txs": [tx.hex()] * 5}).encode(), "application/json"))
    for body, content_type in too_many:
        status, document = await post_batch(bank, body, content_type)
        assert (status, document["code"]) == (413, "TOO_MANY_ITEMS")
    malformed = [
        msgpack.packb({"txs": [tx]}),  # not an array
        msgpack.packb([tx.hex()]),  # a string, not bytes
        msgpack.packb([1, tx]),
        msgpack.packb([[tx]]),
        msgpack.packb([tx])[:-1],  # truncated
        msgpack.packb([tx]) + b"\x00",  # bytes after the array
        msgpack.packb([b"x" * (128 * 1024 + 1)]),  # over TX_SIZE_MAX
    ]
    for body in malformed:
        status, document = await post_batch(bank, body, "application/msgpack")
        assert (status, document["code"]) == (400, "MALFORMED"), body[:20]
    for text in ['{"tx": "00"}', '{"txs": "00"}', '{"txs": [1]}', '{"txs": ["0g"]}', "[]"]:
        status, document = await post_batch(bank, text.encode(), "application/json")
        assert (status, document["code"]) == (400, "MALFORMED"), text
    status, document = await post_batch(bank, msgpack.packb([tx]), "text/plain")
    assert (status, document["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert bank.node.store.load_pool() == []


async def test_a_batch_while_catching_up_is_503_whole(bank: Bank) -> None:
    assert not bank.node.driver.caught_up()  # no validator told it the chain's height yet
    with pytest.raises(ApiError) as refused:
        await bank.client.api.submit_batch([transfer("bank-e", "bank-e", "bank-f", 1)])
    assert (refused.value.status, refused.value.code) == (503, "CATCHING_UP")


# -- GET /v1/blocks/{height_or_hash}, GET /v1/validators ---------------------------------


async def test_a_block_is_the_same_by_height_and_by_hash_and_shows_only_own_txs(
    bank: Bank,
) -> None:
    mine = transfer("bank-e", "bank-e", "bank-f", 1)
    theirs = transfer("bank-f", "bank-f", "bank-f.savings", 1)
    settle(bank, certified_chain(2, {2: [mine, theirs]}), 2)
    by_height = await bank.client.api.block(2)
    assert (by_height["height"], by_height["tx_count"]) == (2, 2)
    assert by_height["tx_hashes"] == [tx_hash_of(mine)]
    assert await bank.client.api.block(by_height["block_hash"]) == by_height
    assert await bank.client.api.block(by_height["block_hash"].upper()) == by_height
    first = await bank.client.api.block(1)
    assert by_height["prev_block_hash"] == first["block_hash"]
    for malformed in ["x", "-1", "+1", "1.0", "0x1", "%D9%A3", "a" * 63, "a" * 65, "1" * 20]:
        with pytest.raises(ApiError) as refused:
            await bank.client.api.block(malformed)
        assert (refused.value.status, refused.value.code) == (400, "MALFORMED"), malformed
    for unknown in ["0", "3", "9" * 19, "ab" * 32, "1" * 64]:
        with pytest.raises(ApiError) as refused:
            await bank.client.api.block(unknown)
        assert (refused.value.status, refused.value.code) == (404, "NOT_FOUND"), unknown


async def test_the_validator_set_is_genesis_with_names_and_powers(bank: Bank) -> None:
    genesis = make_genesis()
    answer = await bank.client.api.validators()
    assert answer["height"] == 0
    names = {p.participant_id: p.name for p in genesis.participants}
    expected: list[dict[str, Any]] = [
        {
            "id": v.validator_id,
            "name": names[v.validator_id],
            "public_key": v.public_key.hex(),
            "voting_power": v.voting_power,
        }
        for v in genesis.validator_set().validators
    ]
    assert answer["validators"] == expected
    assert [v["id"] for v in expected] == ["nbkr", "val-b", "val-c", "val-d"]
    assert answer["total_voting_power"] == sum(v["voting_power"] for v in expected)


# -- GET /v1/governance ------------------------------------------------------------------


async def test_governance_shows_participants_schedule_and_only_the_callers_frozen_accounts(
    bank: Bank,
) -> None:
    caught_up(bank)
    powers = (("nbkr", 2), ("val-b", 1), ("val-c", 1), ("val-d", 1))
    blocks = certified_chain(
        3,
        {
            1: [govern(Freeze(account="bank-e.payroll")), govern(Freeze(account="bank-f"))],
            2: [
                govern(Suspend(participant_id="bank-f")),
                govern(SetValidators(validators=powers, allow_below_four=False)),
            ],
        },
    )
    settle(bank, blocks, 3)
    answer = await bank.client.api.governance()
    assert answer["height"] == 3
    assert (answer["officers"], answer["officer_threshold"]) == (list(OFFICERS), 2)
    participants = {p["id"]: p for p in answer["participants"]}
    assert sorted(participants) == sorted((*VALIDATORS, *BANKS))
    expected = {"id": "bank-f", "name": "bank-f bank", "role": "bank", "suspended": True,
                "public_key": public_hex("bank-f")}  # fmt: skip
    assert participants["bank-f"] == expected
    assert participants["nbkr"]["role"] == "issuer"
    assert not participants["bank-e"]["suspended"]
    # Decided in block 2, in force from 4: the set of now, then the scheduled one.
    assert [entry["from_height"] for entry in answer["validators"]] == [1, 4]
    assert answer["validators"][1]["validators"] == [
        {"id": pid, "voting_power": power} for pid, power in powers
    ]
    assert answer["frozen_accounts"] == ["bank-e.payroll"]  # bank-f's is not bank-e's to see
    async with bank.client.as_participant("nbkr") as central_bank:
        assert (await central_bank.governance())["frozen_accounts"] == ["bank-e.payroll", "bank-f"]
    async with bank.client.as_participant("bank-f") as other:
        assert (await other.governance())["frozen_accounts"] == ["bank-f"]
    # A block of governance transactions moves no account of bank-e's: it reads the block
    # and its event with the count of all and none of them listed.
    block = await bank.client.api.block(1)
    assert (block["tx_count"], block["tx_hashes"]) == (2, [])
    [event] = await take(bank.client.api.events(from_height=1), 1)
    assert event["transactions"] == []


# -- GET /v1/events ----------------------------------------------------------------------


async def take(events: AsyncGenerator[dict[str, Any], None], count: int) -> list[dict[str, Any]]:
    """The next `count` events, within the deadline."""
    async with asyncio.timeout(DEADLINE_S):
        return [await anext(events) for _ in range(count)]


async def test_events_stream_settled_then_live_blocks_with_only_own_transactions(
    bank: Bank,
) -> None:
    mine = transfer("bank-e", "bank-e", "bank-f", 1)
    theirs = transfer("bank-f", "bank-f", "bank-f.savings", 1)
    theirs_later = transfer("bank-f", "bank-f", "bank-f.savings", 2)
    blocks = certified_chain(5, {2: [mine, theirs], 5: [theirs_later]})
    settle(bank, blocks, 3)
    events = bank.client.api.events(from_height=1)
    try:
        settled = await take(events, 3)
        assert [e["height"] for e in settled] == [1, 2, 3]
        assert settled[1]["tx_count"] == 2
        assert settled[1]["transactions"] == [
            {
                "tx_hash": tx_hash_of(mine),
                "status": "final",
                "kind": "transfer",
                "amount": 1,
                "from_account": "bank-e",
                "to_account": "bank-f",
            }
        ]
        expected = await bank.client.api.block(2)
        assert settled[1]["block_hash"] == expected["block_hash"]
        assert settled[1]["time_ms"] == expected["time_ms"]
        settle(bank, blocks, 5)  # live: the stream follows the chain
        live = await take(events, 2)
        assert [e["height"] for e in live] == [4, 5]
        assert (live[1]["tx_count"], live[1]["transactions"]) == (1, [])  # bank-f's own
    finally:
        await events.aclose()


async def test_the_issuer_reads_every_transaction_of_the_stream(bank: Bank) -> None:
    mine = transfer("bank-e", "bank-e", "bank-f", 1)
    theirs = transfer("bank-f", "bank-f", "bank-f.savings", 7)
    settle(bank, certified_chain(1, {1: [mine, theirs]}), 1)
    async with bank.client.as_participant("nbkr") as issuer:
        events = issuer.events(from_height=1)
        try:
            [event] = await take(events, 1)
        finally:
            await events.aclose()
    assert [t["tx_hash"] for t in event["transactions"]] == [tx_hash_of(mine), tx_hash_of(theirs)]


async def read_raw_events(api: ApiClient, target: str, headers: dict[str, str]) -> list[str]:
    """The ids of the events the stream sends until it has sent the node's last height."""
    response = await api.request("GET", target, headers=headers)
    ids: list[str] = []
    async with response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        parser = EventStreamParser()
        async with asyncio.timeout(DEADLINE_S):
            async for chunk in response.content.iter_any():
                ids += [event.id or "" for event in parser.feed(chunk)]
                if ids and ids[-1] == "5":
                    return ids
    raise AssertionError(f"the stream ended after {ids}")


async def test_events_resume_after_the_last_event_id(bank: Bank) -> None:
    settle(bank, certified_chain(5, {}), 5)
    api = bank.client.api
    assert await read_raw_events(api, "/v1/events", {"Last-Event-ID": "2"}) == ["3", "4", "5"]
    # The header wins over the query: it is how a browser's EventSource resumes.
    after_3 = await read_raw_events(api, "/v1/events?from_height=1", {"Last-Event-ID": "3"})
    assert after_3 == ["4", "5"]
    assert await read_raw_events(api, "/v1/events?from_height=4", {}) == ["4", "5"]


async def test_events_refuse_a_bad_start_and_more_streams_than_waits_max(bank: Bank) -> None:
    api = bank.client.api
    for query in ["from_height=0", "from_height=x", "from_height=-1", "from_height=1.5"]:
        response = await api.request("GET", f"/v1/events?{query}")
        async with response:
            assert response.status == 400, query
            assert (await response.json())["code"] == "MALFORMED"
    response = await api.request("GET", "/v1/events", headers={"Last-Event-ID": "two"})
    async with response:
        assert (response.status, (await response.json())["code"]) == (400, "MALFORMED")
    settle(bank, certified_chain(1, {}), 1)
    events = api.events(from_height=1)
    try:
        assert [e["height"] for e in await take(events, 1)] == [1]  # it holds the one slot
        response = await api.request("GET", "/v1/events?from_height=1")
        async with response:
            assert (response.status, (await response.json())["code"]) == (429, "TOO_MANY_WAITS")
        bank.context.close()  # the node stops: the stream ends cleanly
        with pytest.raises(StopAsyncIteration):
            await take(events, 1)
    finally:
        await events.aclose()
    settle(bank, certified_chain(2, {}), 2)  # a closed API wakes no stream again
    assert bank.context.closing


# -- the client's parser -------------------------------------------------------------------


def test_the_event_stream_parser_reads_every_form_of_the_format() -> None:
    parser = EventStreamParser(bytes_max=64)
    stream = (
        b': keepalive\n\nid: 7\nevent: block\ndata: {"a":\r\ndata:1}\r\n\r\n'
        b"data: no type\rid\r\r: only a comment\n\nevent: other\n\n"
    )
    events = []
    for index in range(len(stream)):  # a byte at a time: every split point
        events += parser.feed(stream[index : index + 1])
    assert [(e.type, e.data, e.id) for e in events] == [
        ("block", '{"a":\n1}', "7"),
        ("message", "no type", ""),
    ]
    with pytest.raises(ValueError, match="beyond 64 bytes"):
        parser.feed(b"data: " + b"x" * 100)
