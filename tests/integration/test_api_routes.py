"""Issue 9's routes against real node processes: a batch of 200 transfers settles each
exactly once, and a bank's event stream resumes across a restart of its node with every
height exactly once, its own transfer made meanwhile included."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.api_client import ApiClient
from tests.integration.network import Network, dump_logs

pytestmark = pytest.mark.network

BATCH_SIZE = 200
DEADLINE_S = 60.0


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = Network.create(tmp_path, validators=4, banks=2)
    try:
        yield net
    finally:
        codes = net.stop_all()
        assert all(code == 0 for code in codes.values()), (codes, dump_logs(net))


def start_and_wait_caught_up(network: Network, bank: str) -> None:
    network.start()
    network.wait_for(
        lambda: network.height(bank) >= 1 and bool(network.status(bank)["caught_up"]),
        DEADLINE_S,
        f"{bank} caught up at height >= 1",
    )


async def occurrences(api: ApiClient, first: int, last: int) -> collections.Counter[str]:
    """How often each transaction hash occurs in the blocks first..last (as the issuer)."""
    counts: collections.Counter[str] = collections.Counter()
    for height in range(first, last + 1):
        counts.update((await api.block(height))["tx_hashes"])
    return counts


def test_a_batch_of_200_transfers_settles_each_exactly_once(network: Network) -> None:
    bank, other = network.banks
    start_and_wait_caught_up(network, bank)
    validator = network.validators[0]
    first_height = network.height(validator) + 1
    before = {a: network.balance(bank, a) for a in (bank, other)}
    txs = [network.sign_transfer(bank, other, 1) for _ in range(BATCH_SIZE)]
    results = network.call(bank, lambda api: api.submit_batch(txs), as_participant=bank)
    assert [r["index"] for r in results] == list(range(BATCH_SIZE))
    assert all(r["status"] == "pending" for r in results), results
    hashes = [r["tx_hash"] for r in results]
    assert len(set(hashes)) == BATCH_SIZE
    network.wait_for(
        lambda: network.balance(bank, other) == before[other] + BATCH_SIZE,
        DEADLINE_S,
        f"{BATCH_SIZE} transfers credited",
        seen=lambda: network.balance(bank, other) - before[other],
    )
    assert network.balance(bank, bank) == before[bank] - BATCH_SIZE

    async def statuses(api: ApiClient) -> list[dict[str, Any]]:
        return [await api.transaction(h) for h in hashes]

    assert all(s["status"] == "final" for s in network.call(bank, statuses))
    # The same bytes again: each its first result, and nothing moves.
    again = network.call(bank, lambda api: api.submit_batch(txs), as_participant=bank)
    assert [(r["index"], r["tx_hash"], r["status"]) for r in again] == [
        (index, tx_hash, "final") for index, tx_hash in enumerate(hashes)
    ]
    last_height = network.height(validator) + 2
    network.wait_height([validator, bank], last_height)
    counts = network.call(validator, lambda api: occurrences(api, first_height, last_height))
    assert {h: counts[h] for h in hashes} == dict.fromkeys(hashes, 1)
    assert network.balance(bank, other) == before[other] + BATCH_SIZE


async def read_events(
    api: ApiClient, from_height: int, until_height: int, received: list[dict[str, Any]]
) -> None:
    """Append the stream's events from `from_height` to `received` until one reaches
    `until_height`."""
    async with asyncio.timeout(DEADLINE_S):
        async for event in api.events(from_height=from_height):
            received.append(event)
            if event["height"] >= until_height:
                return
    raise AssertionError(f"the stream ended before height {until_height}")


def test_a_bank_resumes_its_event_stream_across_a_restart_without_gap_or_repeat(
    network: Network,
) -> None:
    bank, other = network.banks
    start_and_wait_caught_up(network, bank)
    network.wait_height([bank], 3)
    received: list[dict[str, Any]] = []

    async def read_until_stopped(api: ApiClient) -> None:
        """Read from height 1; at height 3 stop the node, and read on until the stream
        ends: it ends cleanly when the node stops."""
        async with asyncio.timeout(DEADLINE_S):
            async for event in api.events(from_height=1):
                received.append(event)
                if event["height"] == 3:
                    assert await asyncio.to_thread(network.stop, bank) == 0

    network.call(bank, read_until_stopped, as_participant=bank)
    assert not network.alive(bank)
    stopped_at = received[-1]["height"]
    assert stopped_at >= 3
    # While the bank's node is down, the bank pays through a validator's node.
    validator = network.validators[0]
    tx_hash = network.submit(validator, network.sign_transfer(bank, other, 7))
    settled_at = int(network.wait_final(validator, tx_hash)["height"])
    assert settled_at > stopped_at
    network.start(bank)
    network.wait_for(lambda: network.height(bank) >= 0, DEADLINE_S, f"{bank} answering")
    resume = lambda api: read_events(api, stopped_at + 1, settled_at + 2, received)  # noqa: E731
    network.call(bank, resume, as_participant=bank)

    heights = [event["height"] for event in received]
    assert heights == list(range(1, heights[-1] + 1))  # no gap, no repeat
    mine = [(e["height"], t) for e in received for t in e["transactions"]]
    assert [(height, t["tx_hash"]) for height, t in mine] == [(settled_at, tx_hash)]
    [(_, transaction)] = mine
    assert transaction == {
        "tx_hash": tx_hash,
        "status": "final",
        "kind": "transfer",
        "amount": 7,
        "from_account": bank,
        "to_account": other,
    }
