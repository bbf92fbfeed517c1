"""A bank node's relay of what it kept to the validators (real driver, mempool and store;
fake peers and clock): gossip payloads that always fit a frame, and a kept transaction
that looks lost (overtaken by a later one, or everything stalled) gossiped again, within
bounds, until it settles; one merely waiting in a backlog is not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from node.intake import (
    RELAY_AGAIN_FIRST_MS,
    RELAY_AGAIN_MAX_MS,
    RELAY_AGAIN_STALL_MS,
    RELAY_AGAIN_TXS_PER_TICK,
    Intake,
)
from node.protocol import Status, SyncBlocks, SyncRequest, Txs, decode_payload
from tests.unit.ledger_support import transfer
from tests.unit.test_driver import Node, certified_chain, hear, make_node, status_at

VALIDATOR = "val-c"


@dataclass
class Bank:
    node: Node
    intake: Intake
    gossip: list[bytes]

    def sent(self) -> list[bytes]:
        """The transactions gossiped since the last call, in order."""
        txs = [tx for payload in self.gossip for tx in gossiped(payload)]
        self.gossip.clear()
        return txs


def gossiped(payload: bytes) -> tuple[bytes, ...]:
    decoded = decode_payload(payload)
    assert isinstance(decoded, Txs)
    return decoded.txs


def open_bank(tmp_path: Path, gossip_bytes_max: int = 1 << 20) -> Bank:
    node = make_node(tmp_path, "bank-e")
    gossip: list[bytes] = []
    intake = Intake(
        mempool=node.driver.mempool,
        store=node.store,
        broadcast=gossip.append,
        wake=node.driver.note_transactions,
        caught_up=node.driver.caught_up,
        proposes=False,
        gossip_bytes_max=gossip_bytes_max,
        clock=node.clock,
    )
    # As node.main wires it: a settled block tells the intake what no longer waits.
    node.driver.on_settled.append(lambda settled: intake.note_settled(settled.tx_hashes))
    hear(node, "nbkr", Status(height=0, certificate=b""))  # caught up at height 0
    return Bank(node=node, intake=intake, gossip=gossip)


@pytest.fixture
async def bank(tmp_path: Path) -> AsyncIterator[Bank]:
    opened = open_bank(tmp_path)
    yield opened
    opened.node.store.close()


def transfers(count: int) -> list[bytes]:
    return [transfer("bank-e", "bank-e", "bank-f", 1 + i) for i in range(count)]


class Chain:
    """A certified chain the bank fetches block by block from a validator, as it does."""

    def __init__(self, txs_at: dict[int, list[bytes]]) -> None:
        self.blocks = certified_chain(max(txs_at), txs_at)

    def settle(self, bank: Bank, height: int) -> None:
        node = bank.node
        first = node.driver.ledger.height + 1
        hear(node, VALIDATOR, status_at(self.blocks, height))
        [(peer, request)] = node.network.take(SyncRequest)
        assert peer == VALIDATOR and isinstance(request, SyncRequest)
        assert request.first_height == first
        hear(node, VALIDATOR, SyncBlocks(blocks=tuple(self.blocks[first - 1 : height])))
        assert node.driver.ledger.height == height


async def test_gossip_payloads_never_exceed_their_byte_bound(tmp_path: Path) -> None:
    """A flush of many kept transactions once went out as one payload larger than any
    frame, which the transport dropped whole: 844 of 1,000 payouts never settled."""
    bytes_max = 2_000
    bank = open_bank(tmp_path, gossip_bytes_max=bytes_max)
    txs = transfers(40)
    results = await bank.intake.submit_many(txs)
    assert all(isinstance(r, bytes) for r in results)
    assert len(bank.gossip) > 1
    assert all(len(payload) <= bytes_max for payload in bank.gossip)
    assert bank.sent() == txs  # every one, once, in order
    bank.node.store.close()


async def test_an_overtaken_transaction_is_sent_again_until_it_settles(bank: Bank) -> None:
    first, second = transfers(2)
    await bank.intake.submit_many([first, second])
    assert bank.sent() == [first, second]
    chain = Chain({1: [second], 2: [first]})
    chain.settle(bank, 1)  # the later one settled: the first was lost on the way
    bank.node.clock.advance(RELAY_AGAIN_FIRST_MS - 1)
    assert bank.intake.relay_again() == 0  # not due yet
    bank.node.clock.advance(1)
    assert bank.intake.relay_again() == 1
    assert bank.sent() == [first]
    # Then at doubling intervals, while it still waits.
    bank.node.clock.advance(2 * RELAY_AGAIN_FIRST_MS - 1)
    assert bank.intake.relay_again() == 0
    bank.node.clock.advance(1)
    assert bank.intake.relay_again() == 1
    assert bank.sent() == [first]
    chain.settle(bank, 2)
    bank.node.clock.advance(RELAY_AGAIN_MAX_MS)
    assert bank.intake.relay_again() == 0  # settled: forgotten
    assert bank.intake.relayed_again_count == 2


async def test_a_transaction_is_sent_again_once_an_empty_block_passed_it_by(
    bank: Bank,
) -> None:
    """The symptom of the stranded payouts: blocks kept coming empty."""
    [tx] = transfers(1)
    await bank.intake.submit_many([tx])
    bank.sent()
    chain = Chain({1: [], 2: [], 3: [tx]})
    chain.settle(bank, 1)  # empty, but before it was due: it may not have arrived yet
    bank.node.clock.advance(RELAY_AGAIN_FIRST_MS)
    assert bank.intake.relay_again() == 0
    chain.settle(bank, 2)  # empty, and it has waited long enough: its proposer lacked it
    assert bank.intake.relay_again() == 1
    assert bank.sent() == [tx]
    chain.settle(bank, 3)
    bank.node.clock.advance(RELAY_AGAIN_MAX_MS)
    assert bank.intake.relay_again() == 0


async def test_a_transaction_waiting_in_a_backlog_is_sent_again_only_once_stalled(
    bank: Bank,
) -> None:
    """A national payout drains for many seconds: while the validators keep settling
    what this node sent before, what it sent after is waiting its turn, not lost."""
    first, second, third = transfers(3)
    await bank.intake.submit_many([first, second, third])
    bank.sent()
    bank.node.clock.advance(RELAY_AGAIN_FIRST_MS - 1)
    Chain({1: [first]}).settle(bank, 1)  # progress, in the order sent
    bank.node.clock.advance(1)
    assert bank.intake.relay_again() == 0  # due, but neither overtaken nor stalled
    bank.node.clock.advance(RELAY_AGAIN_STALL_MS - 2)
    assert bank.intake.relay_again() == 0
    bank.node.clock.advance(1)  # nothing of ours settled for RELAY_AGAIN_STALL_MS
    assert bank.intake.relay_again() == 2
    assert bank.sent() == [second, third]


async def test_each_tick_sends_at_most_one_payload(tmp_path: Path) -> None:
    bytes_max = 2_000
    bank = open_bank(tmp_path, gossip_bytes_max=bytes_max)
    txs = transfers(40)
    await bank.intake.submit_many(txs)
    bank.sent()
    bank.node.clock.advance(RELAY_AGAIN_STALL_MS)  # stalled: every one is due and lost
    sent_again: list[bytes] = []
    for _ in range(len(txs)):
        count = bank.intake.relay_again()
        assert count <= RELAY_AGAIN_TXS_PER_TICK
        assert len(bank.gossip) <= 1 and all(len(p) <= bytes_max for p in bank.gossip)
        sent_again += bank.sent()
        if len(sent_again) == len(txs):
            break
    assert sent_again == txs  # the longest due first, each once
    bank.node.store.close()
