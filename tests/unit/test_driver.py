"""The driver's policy, on a fake clock and a fake network, with a real store: when a
height starts, whom it asks for blocks and when it gives up on them, when it is caught
up, and what happens to the transactions it kept when blocks settle."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from consensus.config import PROPOSER_WINDOW_HEIGHTS, ReplicaConfig
from consensus.crypto import Signer
from consensus.messages import (
    DurableState,
    Height,
    Proposal,
    Round,
    ValidatorId,
    Value,
    VoteType,
)
from consensus.replica import Replica
from consensus.wire import decode_evidence, decode_message, encode_certificate, encode_message
from node.block import decode_block, encode_block
from node.driver import (
    FOLLOW_LAG_BLOCKS_MAX,
    FOLLOW_STALE_MS,
    PEER_PAYLOADS_BURST,
    SYNC_TIMEOUT_MS,
    Driver,
    DriverLimits,
    PeerPayload,
    TxsVerified,
    Wake,
)
from node.errors import RefusalCode
from node.ledger import Ledger, StoredReferences, decode_tx_result, open_ledger
from node.mempool import Dropped, Mempool, decode_dropped
from node.protocol import (
    Consensus,
    Payload,
    Status,
    SyncBlocks,
    SyncRequest,
    Txs,
    decode_payload,
    encode_payload,
)
from node.store import Store
from node.tx import EvidenceTx, decode_tx
from tests.unit.ledger_support import (
    BANKS,
    CHAIN_ID,
    VALIDATORS,
    Chain,
    certify,
    make_genesis,
    seed_of,
    transfer,
)

START = [("bank-e", 10_000), ("bank-f", 10_000)]
EMPTY_BLOCK_INTERVAL_MS = 5_000
LIMITS = DriverLimits(
    block_txs_max=100,
    block_bytes_max=1 << 20,
    empty_block_interval_ms=EMPTY_BLOCK_INTERVAL_MS,
    sync_bytes_max=1 << 20,
)


VERIFY_EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=1)


@dataclass
class FakeClock:
    now: int = 1_000_000
    unix: int = 1_700_000_000_000

    def now_ms(self) -> int:
        return self.now

    def unix_ms(self) -> int:
        return self.unix

    def advance(self, ms: int) -> None:
        self.now += ms
        self.unix += ms


@dataclass
class FakeNetwork:
    sent: list[tuple[str, Payload]] = field(default_factory=list)
    disconnected: list[tuple[str, str]] = field(default_factory=list)

    def send(self, peer: str, data: bytes) -> None:
        self.sent.append((peer, decode_payload(data)))

    def disconnect(self, peer: str, reason: str) -> None:
        self.disconnected.append((peer, reason))

    def take(self, kind: type) -> list[tuple[str, Payload]]:
        """The payloads of this kind sent since the last take, oldest first."""
        taken = [(peer, p) for peer, p in self.sent if isinstance(p, kind)]
        self.sent = [(peer, p) for peer, p in self.sent if not isinstance(p, kind)]
        return taken


@dataclass
class Node:
    driver: Driver
    network: FakeNetwork
    clock: FakeClock
    store: Store


def make_node(tmp_path: Path, node_id: str, limits: DriverLimits = LIMITS) -> Node:
    genesis = make_genesis(START)
    store = Store.open(tmp_path / node_id, chain_id=CHAIN_ID, map_size_bytes=1 << 24)
    ledger = open_ledger(genesis, store)
    replica = None
    if node_id in VALIDATORS:
        me = ValidatorId(node_id)
        replica = Replica(
            ReplicaConfig(chain_id=CHAIN_ID),
            Signer(CHAIN_ID, me, seed_of(node_id)),
            DurableState.initial(Height(1)),
        )
    network = FakeNetwork()
    clock = FakeClock()
    peers = tuple(p for p in (*VALIDATORS, *BANKS) if p != node_id)
    driver = Driver(
        node_id=node_id,
        ledger=ledger,
        store=store,
        mempool=Mempool(ledger, txs_max=100, clock=clock),
        replica=replica,
        send=network.send,
        validator_peers=tuple(p for p in peers if p in VALIDATORS),
        all_peers=peers,
        limits=limits,
        clock=clock,
        rng=random.Random(7),
        disconnect=network.disconnect,
        verify_executor=VERIFY_EXECUTOR,
    )
    return Node(driver=driver, network=network, clock=clock, store=store)


@pytest.fixture
async def bank(tmp_path: Path) -> Node:
    return make_node(tmp_path, "bank-e")


def hear(node: Node, peer: str, payload: Payload) -> None:
    """Deliver a payload the way the network does, then let the driver process it all."""
    size = len(encode_payload(payload))
    node.driver.submit_from_peer(PeerPayload(peer_id=peer, payload=payload, size_bytes=size))
    while (item := node.driver.inbox.get_nowait()) is not None:
        node.driver.handle(item)


def certified_chain(heights: int, txs_at: dict[int, list[bytes]]) -> list[tuple[bytes, bytes]]:
    """(block bytes, certificate bytes) of a real certified chain from the same genesis."""
    chain = Chain(Ledger(make_genesis(START)))
    for height in range(1, heights + 1):
        chain.settle(txs_at.get(height, []))
    return [(encode_block(b), encode_certificate(c)) for b, c in chain.blocks]


def status_at(blocks: list[tuple[bytes, bytes]], height: int) -> Status:
    """What a node at `height` of this chain announces."""
    return Status(height=height, certificate=blocks[height - 1][1] if height else b"")


async def test_a_node_is_not_caught_up_until_a_validator_told_it_its_height(bank: Node) -> None:
    driver = bank.driver
    blocks = certified_chain(3, {})
    assert not driver.caught_up()  # nothing heard since start: it cannot judge
    hear(bank, "bank-f", status_at(blocks, 0))
    assert not driver.caught_up()  # another bank is no authority on the chain's height
    hear(bank, "nbkr", status_at(blocks, 0))
    assert driver.caught_up()
    hear(bank, "val-b", status_at(blocks, 2))
    assert driver.caught_up()  # one or two behind is a bank node's normal state
    hear(bank, "val-b", status_at(blocks, 3))
    assert driver.caught_up()  # following live blocks: block 1 was announced just now
    bank.clock.advance(FOLLOW_STALE_MS)
    assert not driver.caught_up()  # it lacks a block announced long ago


def settle_from(node: Node, peer: str, blocks: list[tuple[bytes, bytes]], height: int) -> None:
    """The node fetches blocks up to `height` from `peer`, as a bank node follows."""
    first = node.driver.ledger.height + 1
    [(asked, request)] = node.network.take(SyncRequest)
    assert asked == peer and isinstance(request, SyncRequest) and request.first_height == first
    hear(node, peer, SyncBlocks(blocks=tuple(blocks[first - 1 : height])))
    assert node.driver.ledger.height == height


async def test_a_node_following_live_blocks_a_few_behind_is_caught_up(bank: Node) -> None:
    """At 400 transfers/s blocks come every 60-80 ms and a bank node is often 3 behind;
    the strict rule had it refuse submissions (503 CATCHING_UP) under modest load."""
    driver = bank.driver
    blocks = certified_chain(2 + FOLLOW_LAG_BLOCKS_MAX + 1, {})
    hear(bank, "nbkr", status_at(blocks, 0))
    assert driver.caught_up()
    for height in range(1, FOLLOW_LAG_BLOCKS_MAX + 1):  # a block every 70 ms...
        bank.clock.advance(70)
        hear(bank, "val-b", status_at(blocks, height))
        if height % 4 == 0:  # ...and the bank fetches them four at a time
            settle_from(bank, "val-b", blocks, height - 1)
        assert driver.caught_up(), height
    assert driver.ledger.height == FOLLOW_LAG_BLOCKS_MAX - 1
    # Stuck, while more blocks come: what it lacks gets old, so it is catching up.
    bank.clock.advance(FOLLOW_STALE_MS - 1)
    hear(bank, "val-b", status_at(blocks, FOLLOW_LAG_BLOCKS_MAX + 2))
    assert driver.caught_up()
    bank.clock.advance(1)
    assert not driver.caught_up()
    settle_from(bank, "val-b", blocks, FOLLOW_LAG_BLOCKS_MAX)  # 2 behind: current again
    assert driver.caught_up()


async def test_a_node_far_behind_or_just_started_is_catching_up(bank: Node) -> None:
    """Whoever fetches blocks announced before it was current cannot judge yet: a node
    restarted a few blocks behind, or one further behind than FOLLOW_LAG_BLOCKS_MAX."""
    driver = bank.driver
    far = FOLLOW_LAG_BLOCKS_MAX + 3
    blocks = certified_chain(far + 1, {})
    hear(bank, "nbkr", status_at(blocks, 3))  # just started, 3 behind
    assert not driver.caught_up()
    settle_from(bank, "nbkr", blocks, 1)
    assert driver.caught_up()  # within the strict lag: current, and following from now
    bank.clock.advance(10)
    hear(bank, "nbkr", status_at(blocks, far))  # a sudden jump: a partition healed
    assert not driver.caught_up()
    bank.network.take(SyncRequest)
    hear(bank, "nbkr", status_at(blocks, far + 1))
    assert not driver.caught_up()  # no longer following: 2 behind first


async def test_a_node_behind_asks_a_peer_ahead_and_settles_certified_blocks(bank: Node) -> None:
    blocks = certified_chain(3, {2: [transfer("bank-e", "bank-e", "bank-f", 5)]})
    hear(bank, "val-c", status_at(blocks, 3))
    [(peer, request)] = bank.network.take(SyncRequest)
    assert peer == "val-c"
    assert request == SyncRequest(first_height=1, count=3)
    hear(bank, "val-d", SyncBlocks(blocks=tuple(blocks)))  # not asked: ignored
    assert bank.driver.ledger.height == 0
    assert bank.driver.counters["sync_unsolicited"] == 1
    hear(bank, "val-c", SyncBlocks(blocks=tuple(blocks)))
    assert bank.driver.ledger.height == 3
    assert bank.store.tip.height == 3
    assert bank.driver.ledger.balances["bank-f"] == 10_005


async def test_only_validators_announce_each_height_they_settle(tmp_path: Path) -> None:
    """Bank nodes learn each height from the validators; a bank's own height waits for its
    periodic announcement (with 20 banks, announcing every block was most of the traffic)."""
    blocks = certified_chain(3, {})
    for node_id in ("bank-e", "val-b"):
        node = make_node(tmp_path, node_id)
        hear(node, "val-c", status_at(blocks, 3))
        [(peer, _)] = node.network.take(SyncRequest)
        hear(node, peer, SyncBlocks(blocks=tuple(blocks)))
        assert node.driver.ledger.height == 3
        announced = {peer for peer, status in node.network.take(Status) if status.height == 3}
        everyone = {p for p in (*VALIDATORS, *BANKS) if p != node_id}
        assert announced == (everyone if node_id == "val-b" else set()), node_id


async def test_an_unanswered_sync_request_times_out_and_another_peer_is_asked(
    bank: Node,
) -> None:
    blocks = certified_chain(5, {})
    hear(bank, "val-b", status_at(blocks, 5))
    hear(bank, "val-c", status_at(blocks, 5))
    [(first, _)] = bank.network.take(SyncRequest)
    bank.clock.advance(SYNC_TIMEOUT_MS - 1)
    bank.driver.handle(Wake())
    assert bank.network.take(SyncRequest) == []  # still waiting for the first
    bank.clock.advance(1)
    bank.driver.handle(Wake())
    [(second, _)] = bank.network.take(SyncRequest)
    assert {first, second} == {"val-b", "val-c"}
    assert bank.driver.counters["sync_timeout"] == 1


async def test_a_peer_that_serves_nothing_is_not_asked_again_at_once(bank: Node) -> None:
    blocks = certified_chain(5, {})
    hear(bank, "val-b", status_at(blocks, 5))
    hear(bank, "val-c", status_at(blocks, 5))
    [(first, _)] = bank.network.take(SyncRequest)
    hear(bank, first, SyncBlocks(blocks=()))
    [(second, _)] = bank.network.take(SyncRequest)
    assert second != first


async def test_kept_transactions_get_their_fate_when_synced_blocks_settle(bank: Node) -> None:
    """An accepted transaction that expires unsettled, or whose UETR another transaction
    consumes, leaves the durable pool with a fate in the block's own write."""
    mempool = bank.driver.mempool
    expiring = mempool.add(transfer("bank-e", "bank-e", "bank-f", 1, expiry_height=2)).tx
    settling = mempool.add(transfer("bank-e", "bank-e", "bank-f", 2)).tx
    for tx in (expiring, settling):
        bank.store.save_pool([(tx.tx_hash, tx.raw)])
        mempool.kept.add(tx.tx_hash)
    blocks = certified_chain(2, {1: [settling.raw]})
    hear(bank, "val-b", status_at(blocks, 2))
    hear(bank, "val-b", SyncBlocks(blocks=tuple(blocks)))
    assert bank.driver.ledger.height == 2
    assert len(mempool) == 0
    assert bank.store.load_pool() == []
    dropped = bank.store.load_dropped(expiring.tx_hash)
    assert dropped is not None
    assert decode_dropped(dropped) == Dropped(
        code=RefusalCode.EXPIRED, height=2, first_tx_hash=None
    )
    assert bank.store.load_dropped(settling.tx_hash) is None
    assert bank.store.load_tx_result(settling.tx_hash) is not None


def proposals(node: Node) -> list[Proposal]:
    """The proposals broadcast since the last call, as one validator peer received them."""
    receiver = next(v for v in VALIDATORS if v != node.driver.node_id)
    messages = [
        decode_message(p.message)
        for peer, p in node.network.take(Consensus)
        if peer == receiver and isinstance(p, Consensus)
    ]
    return [m for m in messages if isinstance(m, Proposal)]


async def test_a_validator_starts_a_height_for_work_or_after_the_empty_block_interval(
    tmp_path: Path,
) -> None:
    genesis = make_genesis(START)
    proposer = genesis.validator_set().proposer(Height(1), Round(0))
    node = make_node(tmp_path, proposer)
    node.driver.handle(Wake())
    assert proposals(node) == []  # no work, and the interval has not passed
    node.clock.advance(EMPTY_BLOCK_INTERVAL_MS)
    node.driver.handle(Wake())
    [empty] = proposals(node)
    assert empty.height == 1


async def test_a_validator_starts_a_height_at_once_for_a_transaction(tmp_path: Path) -> None:
    genesis = make_genesis(START)
    proposer = genesis.validator_set().proposer(Height(1), Round(0))
    node = make_node(tmp_path, proposer)
    tx = transfer("bank-e", "bank-e", "bank-f", 1)
    node.driver.mempool.add(tx)
    node.driver.handle(Wake())
    [proposal] = proposals(node)
    assert decode_tx(tx, CHAIN_ID).raw in proposal.value.payload


async def test_a_height_starts_with_the_proposer_order_of_the_carried_certificates(
    tmp_path: Path,
) -> None:
    """val-d signed none of the certificates the synced blocks carry (3 of 4 signed each),
    so at a height whose plain round-0 proposer is val-d another validator proposes."""
    validators = make_genesis(START).validator_set()
    passed = frozenset({ValidatorId("val-d")})
    height = next(
        h for h in range(PROPOSER_WINDOW_HEIGHTS + 2, 40)
        if validators.proposer(Height(h), Round(0)) == "val-d"
    )  # fmt: skip
    chosen = validators.proposer(Height(height), Round(0), passed)
    assert chosen != "val-d"
    node = make_node(tmp_path, chosen)
    blocks = certified_chain(height - 1, {})
    hear(node, "val-b" if chosen != "val-b" else "val-c", status_at(blocks, height - 1))
    [(peer, _)] = node.network.take(SyncRequest)
    hear(node, peer, SyncBlocks(blocks=tuple(blocks)))
    assert node.driver.ledger.height == height - 1
    assert node.driver.ledger.passed_over_next() == passed
    proposals(node)  # whatever it sent while syncing
    node.clock.advance(EMPTY_BLOCK_INTERVAL_MS)
    node.driver.handle(Wake())
    [proposal] = proposals(node)
    assert (proposal.height, proposal.round, proposal.proposer) == (height, 0, chosen)


async def test_the_stored_references_see_what_the_driver_settled(bank: Node) -> None:
    tx = transfer("bank-e", "bank-e", "bank-f", 3)
    blocks = certified_chain(1, {1: [tx]})
    hear(bank, "val-b", status_at(blocks, 1))
    hear(bank, "val-b", SyncBlocks(blocks=tuple(blocks)))
    decoded = decode_tx(tx, CHAIN_ID)
    assert StoredReferences(bank.store).lookup([decoded.uetr + decoded.signer.encode()]) == [
        decoded.tx_hash
    ]


# -- a hostile participant (issue 8) ----------------------------------------------------


async def test_a_proposer_never_builds_a_block_over_the_size_it_accepts(tmp_path: Path) -> None:
    """Finding 1: the builder bounded the transactions' bytes, the check the encoded block,
    so a full pool made every proposer build a block every validator refused."""
    genesis = make_genesis(START)
    proposer = genesis.validator_set().proposer(Height(1), Round(0))
    limit = 8_000
    node = make_node(tmp_path, proposer, dataclasses.replace(LIMITS, block_bytes_max=limit))
    for amount in range(1, 101):  # about 20 KB of transactions
        node.driver.mempool.add(transfer("bank-e", "bank-e", "bank-f", amount, remittance="x" * 40))
    node.driver.handle(Wake())
    [proposal] = proposals(node)
    assert len(proposal.value.payload) <= limit
    block = decode_block(proposal.value.payload)
    assert 5 <= len(block.txs) < 100  # as many as fit, not all
    assert await checked(node, proposal.value)  # its own check accepts what it built


async def checked(node: Node, value: Value) -> bool:
    """Ask the driver to check a proposed value, as the replica does; await its answer,
    which comes back through the inbox once the signatures are checked off the loop."""
    assert node.driver._check_value(Height(node.driver.ledger.height + 1), value) is None
    item = await asyncio.wait_for(node.driver.inbox.get(), 30)
    assert isinstance(item, TxsVerified)
    invalid_before = node.driver.counters["block_invalid"]
    node.driver.handle(item)
    return node.driver.counters["block_invalid"] == invalid_before


async def test_a_proposal_with_a_badly_signed_transaction_is_refused_off_the_loop(
    tmp_path: Path,
) -> None:
    """Found with issue 8: a proposer's block of unknown transactions was verified on the
    event loop, as gossip was; now the loop only hands it to a worker thread."""
    node = make_node(tmp_path, "nbkr")
    good = [transfer("bank-e", "bank-e", "bank-f", amount) for amount in (1, 2)]
    bad = bytes(64) + transfer("bank-e", "bank-e", "bank-f", 3)[64:]
    for txs, valid in ((good, True), ([*good, bad], False)):
        block = node.driver.ledger.make_block(
            txs, time_ms=node.clock.unix, proposer="val-b", prev_certificate=None
        )
        value = Value(value_id=block.header.hash(), payload=encode_block(block))
        assert await checked(node, value) is valid


async def test_a_check_cancelled_as_the_node_stops_leaves_no_error(tmp_path: Path) -> None:
    """At stop the executor cancels the checks not yet begun; their callback then read
    the cancelled future's exception and logged a CancelledError traceback (fresh-clone
    run 14: a hostile-peer test found 'Traceback' in a validator's log)."""
    node = make_node(tmp_path, "nbkr")
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    node.driver._verify_executor = executor
    release = threading.Event()
    executor.submit(release.wait)  # the one worker is busy: the check waits in the queue
    block = node.driver.ledger.make_block(
        [transfer("bank-e", "bank-e", "bank-f", 1)],
        time_ms=node.clock.unix,
        proposer="val-b",
        prev_certificate=None,
    )
    value = Value(value_id=block.header.hash(), payload=encode_block(block))
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        assert node.driver._check_value(Height(1), value) is None
        executor.shutdown(wait=False, cancel_futures=True)
        release.set()
        for _ in range(10):
            await asyncio.sleep(0)  # the cancelled check's callbacks run
    finally:
        loop.set_exception_handler(None)
    assert errors == []
    assert node.driver.inbox.get_nowait() is None


async def test_an_uncertified_height_claim_changes_nothing_and_disconnects(tmp_path: Path) -> None:
    """Finding 2: one unsigned STATUS claiming 2**63-1 made validators produce blocks
    nonstop. Only certified heights count."""
    genesis = make_genesis(START)
    node = make_node(tmp_path, genesis.validator_set().proposer(Height(1), Round(0)))
    forged = certified_chain(1, {})[0][1]  # a real certificate, but of height 1
    for claim in (Status(height=2**63 - 1, certificate=b""), Status(height=5, certificate=forged)):
        hear(node, "bank-f", claim)
    assert node.driver.peer_heights == {}
    assert node.network.take(SyncRequest) == []
    assert [peer for peer, _ in node.network.disconnected] == ["bank-f", "bank-f"]
    node.driver.handle(Wake())
    assert proposals(node) == []  # no height started for a claim


async def test_a_peer_behind_this_node_is_heard_without_judging_old_sets(bank: Node) -> None:
    """fresh-clone run 3: a peer at height 1 told a node at height 3 its height; the node
    asked for the validator set of height 1, which it no longer keeps, and crashed."""
    blocks = certified_chain(3, {})
    hear(bank, "val-b", status_at(blocks, 3))
    hear(bank, "val-b", SyncBlocks(blocks=tuple(blocks)))
    assert bank.driver.ledger.height == 3
    # A validator that settles its own decisions raises its height, not certified_height
    # (which counts what peers proved): as the lone validator of that run had.
    bank.driver.certified_height = 0
    hear(bank, "bank-f", status_at(blocks, 1))
    assert bank.driver.peer_heights["bank-f"] == 1
    assert bank.network.disconnected == []


async def test_a_claim_past_the_known_sets_needs_a_third_of_the_latest_known_power(
    bank: Node,
) -> None:
    """At height 0 a node knows the validator sets up to height 2 (a change decided in H is
    in force from H+2). A certified claim of height 5, whose set it cannot know, counts if
    more than a third of the latest set it knows signed it (one honest validator did);
    fewer signers are no certificate, and the peer is disconnected."""
    blocks = certified_chain(5, {})
    block = decode_block(blocks[4][0])
    one_signer = encode_certificate(certify(block, VALIDATORS[:1]))  # 1 of 4: not > 1/3
    hear(bank, "val-b", Status(height=5, certificate=one_signer))
    assert ("val-b", "claimed height 5 without a certificate") in bank.network.disconnected
    assert bank.driver.peer_heights == {}
    two_signers = encode_certificate(certify(block, VALIDATORS[:2]))  # 2 of 4: > 1/3
    hear(bank, "val-c", Status(height=5, certificate=two_signers))
    assert bank.driver.peer_heights == {"val-c": 5}
    assert bank.network.take(SyncRequest)  # it asks for the blocks, checked one by one


async def test_a_failed_sync_forgets_the_claim(bank: Node) -> None:
    blocks = certified_chain(4, {})
    hear(bank, "val-b", status_at(blocks, 4))
    hear(bank, "val-b", SyncBlocks(blocks=()))
    assert "val-b" not in bank.driver.peer_heights


async def test_a_flooding_peer_is_disconnected_and_others_keep_their_turn(bank: Node) -> None:
    """Finding 3: a bank flooding STATUS into the one shared inbox stalled consensus."""
    status = Status(height=0, certificate=b"")
    size = len(encode_payload(status))
    driver = bank.driver
    for _ in range(PEER_PAYLOADS_BURST + 10):
        driver.submit_from_peer(PeerPayload(peer_id="bank-f", payload=status, size_bytes=size))
    driver.submit_from_peer(PeerPayload(peer_id="val-b", payload=status, size_bytes=size))
    assert ("bank-f", "over its payload budget") in bank.network.disconnected
    peers = [item.peer_id for item in iter(driver.inbox.get_nowait, None)]  # type: ignore[union-attr]
    assert peers == ["val-b"]  # the flooder's queue was dropped with it


async def test_only_validators_may_send_consensus_messages(tmp_path: Path) -> None:
    node = make_node(tmp_path, "nbkr")
    signer = Signer(CHAIN_ID, ValidatorId("bank-f"), seed_of("bank-f"))
    vote = signer.sign_vote(VoteType.PREVOTE, Height(1), Round(0), bytes(32))
    hear(node, "bank-f", Consensus(message=encode_message(vote)))
    assert node.network.disconnected == [
        ("bank-f", "consensus message from a participant that is no validator")
    ]


async def test_a_badly_signed_message_cannot_start_a_height(tmp_path: Path) -> None:
    node = make_node(tmp_path, "nbkr")
    vote = Signer(CHAIN_ID, ValidatorId("val-b"), seed_of("val-c")).sign_vote(
        VoteType.PREVOTE, Height(1), Round(0), bytes(32)
    )  # val-b's name, val-c's key
    hear(node, "val-b", Consensus(message=encode_message(vote)))
    assert [reason for _, reason in node.network.disconnected] == [
        "consensus message with a bad signature"
    ]
    assert node.network.take(Consensus) == []


async def test_sync_answers_are_budgeted_per_peer(tmp_path: Path) -> None:
    """Finding 8: 20 requests of 183 bytes returned 5 MB."""
    limits = dataclasses.replace(LIMITS, sync_bytes_max=4_000)
    node = make_node(tmp_path, "bank-e", limits)
    blocks = certified_chain(30, {})
    hear(node, "val-b", status_at(blocks, 30))
    hear(node, "val-b", SyncBlocks(blocks=tuple(blocks)))
    assert node.driver.ledger.height == 30
    served = 0
    for _ in range(20):
        hear(node, "bank-f", SyncRequest(first_height=1, count=30))
        [(_, answer)] = node.network.take(SyncBlocks)
        assert isinstance(answer, SyncBlocks)
        served += sum(len(b) + len(c) for b, c in answer.blocks)
    assert 0 < served <= 4_000  # one burst, nothing more until time passes
    node.clock.advance(1_000)
    hear(node, "bank-f", SyncRequest(first_height=1, count=30))
    [(_, answer)] = node.network.take(SyncBlocks)
    assert isinstance(answer, SyncBlocks) and answer.blocks


async def test_equivocation_evidence_is_stored_with_both_votes(tmp_path: Path) -> None:
    """Finding 11: evidence was counted and logged, then lost."""
    node = make_node(tmp_path, "nbkr")
    signer = Signer(CHAIN_ID, ValidatorId("val-b"), seed_of("val-b"))
    votes = [
        signer.sign_vote(VoteType.PREVOTE, Height(1), Round(0), value_id)
        for value_id in (bytes(32), b"\x01" * 32)
    ]
    for vote in votes:
        hear(node, "val-b", Consensus(message=encode_message(vote)))
    [stored] = node.store.load_evidence(0, 10)
    evidence = decode_evidence(stored)
    assert {evidence.first, evidence.second} == set(votes)
    assert node.driver.counters["evidence"] == 1


async def test_a_validator_puts_the_evidence_it_saw_on_chain(tmp_path: Path) -> None:
    """Issue 13: the evidence the core reports becomes an evidence transaction in this
    validator's pool (kept in the store, gossiped to the validators), which settles."""
    node = make_node(tmp_path, "nbkr")
    signer = Signer(CHAIN_ID, ValidatorId("val-b"), seed_of("val-b"))
    for value_id in (bytes(32), b"\x01" * 32):
        vote = signer.sign_vote(VoteType.PREVOTE, Height(1), Round(0), value_id)
        hear(node, "val-b", Consensus(message=encode_message(vote)))
    [tx_bytes] = node.driver.mempool.take(10, 1 << 20, 0)
    tx = decode_tx(tx_bytes, CHAIN_ID)
    assert isinstance(tx, EvidenceTx)
    assert (tx.signer, tx.evidence.first.voter) == ("nbkr", "val-b")
    assert tx.tx_hash in node.driver.mempool.kept
    assert node.store.load_pool() == [tx_bytes]
    gossiped = node.network.take(Txs)
    assert {peer for peer, _ in gossiped} == set(VALIDATORS) - {"nbkr"}
    assert all(payload == Txs(txs=(tx_bytes,)) for _, payload in gossiped)
    assert node.driver.counters["evidence_submitted"] == 1
    chain = Chain(Ledger(make_genesis(START)))
    effects = chain.settle([tx_bytes])
    assert [decode_tx_result(result).code for _, result in effects.tx_results] == [None]


# -- sync of certified blocks, pipelined (issue 12) -----------------------------------------


def forged_chain(voters: tuple[str, ...]) -> list[tuple[bytes, bytes]]:
    """Block 1 with a transfer whose signature is bad, certified by `voters`: validators
    that precommitted it without checking, so a faulty set when they hold a quorum."""
    tx = transfer("bank-e", "bank-e", "bank-f", 7)
    forged = tx[:10] + bytes([tx[10] ^ 1]) + tx[11:]
    chain = Chain(Ledger(make_genesis(START)))
    block = chain.next_block([forged])
    certificate = encode_certificate(certify(block, voters))
    return [(encode_block(block), certificate)]


async def test_a_synced_certified_block_settles_without_its_signatures_checked(
    bank: Node,
) -> None:
    """The certificate stands for the signature checks of the validators that signed it
    (node/ledger.py, "Certified blocks in sync"): a block whose transaction has a bad
    signature settles, which it could not if any signature were checked. Such a block
    exists only if more than 2/3 of the power is faulty, as here (all four signed). A
    proposal with the same bad signature is still refused:
    test_a_proposal_with_a_badly_signed_transaction_is_refused_off_the_loop."""
    blocks = forged_chain(VALIDATORS)
    hear(bank, "val-c", status_at(blocks, 1))
    bank.network.take(SyncRequest)
    hear(bank, "val-c", SyncBlocks(blocks=tuple(blocks)))
    assert bank.driver.ledger.height == 1
    assert bank.driver.ledger.balances["bank-f"] == 10_007
    assert bank.driver.stage_seconds["sync_validate"] > 0


async def test_a_synced_block_without_a_quorum_is_refused(bank: Node) -> None:
    blocks = forged_chain(VALIDATORS[:3])
    weak = forged_chain(VALIDATORS[:2])  # the same block, 2 of 4 precommits
    hear(bank, "val-c", status_at(blocks, 1))
    bank.network.take(SyncRequest)
    hear(bank, "val-c", SyncBlocks(blocks=tuple(weak)))
    assert bank.driver.ledger.height == 0
    assert bank.driver.counters["sync_refused"] == 1


async def test_the_next_range_is_asked_for_before_this_one_settles(bank: Node) -> None:
    blocks = certified_chain(5, {2: [transfer("bank-e", "bank-e", "bank-f", 5)]})
    hear(bank, "val-c", status_at(blocks, 5))
    hear(bank, "val-b", status_at(blocks, 5))
    [(first_peer, _)] = bank.network.take(SyncRequest)
    answer = SyncBlocks(blocks=tuple(blocks[:2]))
    size = len(encode_payload(answer))
    bank.driver.submit_from_peer(PeerPayload(peer_id=first_peer, payload=answer, size_bytes=size))
    bank.driver.handle(bank.driver.inbox.get_nowait())  # the answer: the next ask leaves
    [(second_peer, request)] = bank.network.take(SyncRequest)
    assert request == SyncRequest(first_height=3, count=3)
    assert bank.driver.ledger.height == 0  # not settled yet: the next turn of the loop
    writes = bank.store.write_count
    bank.driver.handle(bank.driver.inbox.get_nowait())
    assert bank.driver.ledger.height == 2
    assert bank.store.write_count == writes + 1  # the answer's blocks in one write
    hear(bank, second_peer, SyncBlocks(blocks=tuple(blocks[2:])))
    assert bank.driver.ledger.height == 5
    assert bank.driver.ledger.balances["bank-f"] == 10_005


async def test_an_answer_asked_for_before_an_earlier_one_failed_is_no_fault(bank: Node) -> None:
    blocks = certified_chain(4, {})
    bad = (blocks[1][0], blocks[0][1])  # block 2 with block 1's certificate
    hear(bank, "val-c", status_at(blocks, 4))
    hear(bank, "val-b", status_at(blocks, 4))
    [(first_peer, _)] = bank.network.take(SyncRequest)
    hear(bank, first_peer, SyncBlocks(blocks=(blocks[0], bad)))
    assert bank.driver.ledger.height == 1
    assert bank.driver.counters["sync_refused"] == 1
    [(second_peer, request)] = bank.network.take(SyncRequest)
    assert request.first_height == 3  # asked before block 2 failed
    hear(bank, second_peer, SyncBlocks(blocks=tuple(blocks[2:])))
    assert bank.driver.counters["sync_stale"] == 1
    assert second_peer in bank.driver.peer_heights  # not forgotten: it served what it was asked
    [(_, again)] = bank.network.take(SyncRequest)
    assert again.first_height == 2
