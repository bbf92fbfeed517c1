"""A real network of node processes: finality, crashes, halts, late joiners, bad peers.

Every wait here is for a condition with a deadline (tests/integration/waiting.py): these
tests share two cores with other tests, so no step may assume how long another takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import msgpack
import pytest
from nacl.signing import SigningKey

from node.channel import DialerHandshake
from node.keys import load_key_file
from node.transport import PEER_PATH
from tests.integration.network import Network, dump_logs
from tests.integration.peer_client import PeerClient
from tests.integration.waiting import assert_throughout, wait_for_async, within

pytestmark = pytest.mark.network


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = Network.create(tmp_path)
    try:
        yield net
    finally:
        codes = net.stop_all()
        # A clean SIGTERM stop exits 0: no node crashed during the test.
        assert all(code == 0 for code in codes.values()), (codes, dump_logs(net))


def test_transfers_at_both_banks_are_final_on_every_node(network: Network) -> None:
    network.start()
    everyone = list(network.entries)
    network.wait_height(everyone, 1)
    bank_1, bank_2 = network.banks
    hashes = [
        network.submit(bank_1, network.sign_transfer(bank_1, bank_2, 100 + i)) for i in range(20)
    ]
    hashes += [network.submit(bank_2, network.sign_transfer(bank_2, bank_1, 1)) for _ in range(20)]
    finals = [network.wait_final(node, h) for node in everyone for h in hashes]
    assert {f["status"] for f in finals} == {"final"}
    network.assert_same_chain(everyone, max(f["height"] for f in finals))
    start = 100_000_000_000  # the devnet issuance per bank, in tyiyn
    moved = sum(100 + i for i in range(20)) - 20
    for node in everyone:
        assert network.balance(node, bank_1) == start - moved
        assert network.balance(node, bank_2) == start + moved


def test_killed_validator_catches_up_and_votes_again(network: Network) -> None:
    network.start()
    network.wait_height(list(network.entries), 2)
    victim = network.validators[-1]
    # Kill while the victim is at work, not at a clean stop: right after it is seen to
    # settle a new height it is starting the next one (timers armed, votes in flight).
    settled = network.height(victim)
    network.wait_for(
        lambda: network.height(victim) > settled,
        60,
        f"{victim} to settle a height above {settled}",
        seen=lambda: network.height(victim),
    )
    network.kill9(victim)
    others = [n for n in network.entries if n != victim]
    at_kill = max(network.heights(others).values())
    network.wait_height(others, at_kill + 5)  # 3 of 4 validators keep finalizing
    network.start(victim)
    network.wait_height([victim], max(network.heights(others).values()))
    # Votes again: with another validator down, progress needs the restarted one.
    second = network.validators[-2]
    network.kill9(second)
    resumed = max(network.heights([n for n in network.entries if n != second]).values())
    network.wait_height([victim, network.validators[0]], resumed + 3)
    network.start(second)
    network.wait_height([second], resumed + 3)
    assert network.evidence_count() == 0  # no validator saw a conflicting signature


def test_two_of_four_down_halts_safely_and_resumes(network: Network) -> None:
    everyone = list(network.entries)
    network.start()
    network.wait_height(everyone, 2)
    down = network.validators[-2:]
    for node in down:
        network.kill9(node)
    up = [n for n in everyone if n not in down]
    # A bound instead of a guess at when decisions in flight have landed. A block needs
    # precommits from 3 of the 4 validators, so from at least one up validator; the down
    # two could only have precommitted a height that an up validator had already started.
    # So nothing above the highest height an up node has settled (read after the kill,
    # hence at least that at the kill) plus one can ever be decided while they are down.
    bound = max(network.heights(up).values()) + 1
    bank_1, bank_2 = network.banks
    tx_hash = network.submit(bank_1, network.sign_transfer(bank_1, bank_2, 777))
    highest_seen = 0

    def halted() -> None:
        nonlocal highest_seen
        heights = network.heights(up)
        highest_seen = max(highest_seen, *heights.values())
        assert highest_seen <= bound, (f"a block above {bound} without 2/3", heights)
        # Submitted after the kill, so no value the down validators voted for holds it.
        assert network.tx_status(bank_1, tx_hash)["status"] == "pending"  # nothing lost

    # No condition can show that nothing will ever be decided, so watch for several rounds
    # (with FAST timeouts the first rounds of a halted height take 1-3 s each). A correct
    # network passes however long this is; only a failing one could slip through.
    assert_throughout(halted, duration_s=4)
    network.start(*down)
    final = network.wait_final(bank_2, tx_hash)
    assert final["status"] == "final"
    assert final["height"] > highest_seen  # decided after the restart, not before
    network.assert_same_chain(everyone, final["height"])


@pytest.mark.timeout(600)  # 300 heights, then a sync: minutes on a loaded machine
def test_late_bank_node_syncs_hundreds_of_blocks_then_follows(tmp_path: Path) -> None:
    network = Network.create(tmp_path, env={"SOMNET_CONSENSUS_EMPTY_BLOCK_INTERVAL_MS": "1"})
    bank_1, late = network.banks
    try:
        network.start(*network.validators, bank_1)
        network.wait_height([bank_1], 300, timeout_s=180)
        network.start(late)
        target = network.height(bank_1)
        network.wait_height([late], target, timeout_s=120)
        tx_hash = network.submit(bank_1, network.sign_transfer(bank_1, late, 5))
        assert network.wait_final(late, tx_hash)["status"] == "final"
        network.assert_same_chain([bank_1, late], target)
    finally:
        codes = network.stop_all()
    assert all(code == 0 for code in codes.values()), (codes, dump_logs(network))


HANDSHAKE_TIMEOUT_S = 30
DELIVERY_ATTEMPTS_MAX = 5


async def raw_link(url: str, as_id: str, target: str, network: Network) -> PeerClient:
    """A genuine handshake with a genesis key, then the raw socket for abuse."""
    keys = {p.participant_id: p.public_key for p in network.genesis.participants}
    return await within(
        PeerClient.connect(
            url,
            chain_id=network.genesis.chain_id,
            as_id=as_id,
            signing_key=load_key_file(network.entries[as_id].home / "node_key.json"),
            target_id=target,
            target_key=keys[target],
        ),
        HANDSHAKE_TIMEOUT_S,
        f"{target}'s handshake",
    )


async def deliver(
    network: Network,
    target: str,
    as_id: str,
    frame: bytes,
    evidence: Callable[[], int],
    what: str,
) -> None:
    """Send `frame`, sealed, to `target` as `as_id` until `evidence()` grows: the target
    handled it.

    The real `as_id` is connected too. When it redials, the target closes our link in its
    favour, possibly before reading our frame; then the frame goes again on a new link.
    """
    url = network.entries[target].peer_url
    before = evidence()
    for _ in range(DELIVERY_ATTEMPTS_MAX):
        client = await raw_link(url, as_id, target, network)
        ws = client.ws
        closed = asyncio.ensure_future(ws.receive())
        try:
            # The node may close the link while the oversized frame is still in flight.
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await ws.send_bytes(client.channel.send.seal(frame))
            # A dropped payload keeps the link open, a bad frame closes it: either way the
            # target shows it in `evidence`, unless the real bank-1 took the link first.
            await wait_for_async(
                lambda link=closed: link.done() or evidence() > before, 30, what, seen=evidence
            )
            if evidence() > before:
                return
        finally:
            closed.cancel()
            await client.close()
    raise AssertionError(f"{what}: not seen after {DELIVERY_ATTEMPTS_MAX} links")


async def abuse(network: Network, target: str) -> None:
    def logged(line: str) -> Callable[[], int]:
        return lambda: network.log(target).count(line)

    def counted(*names: str) -> Callable[[], int]:
        return lambda: sum(network.status(target)["counters"].get(n, 0) for n in names)

    # An unknown identity: no real node speaks for it, so one try is enough.
    url = network.entries[target].peer_url
    refused = logged("refused: unknown id 'mallory'")
    async with aiohttp.ClientSession() as session, session.ws_connect(url + PEER_PATH) as ws:
        mallory = DialerHandshake(
            chain_id=network.genesis.chain_id,
            dialer_id="mallory",
            listener_id=target,
            signing_key=SigningKey(bytes(32)),  # no genesis key: refused at its hello
            listener_key=bytes(32),
            ephemeral_secret=bytes(range(32)),
        )
        await ws.send_bytes(mallory.hello())
        reply = await within(ws.receive(), HANDSHAKE_TIMEOUT_S, "the refusal of mallory")
        assert reply.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await wait_for_async(lambda: refused() == 1, 30, "mallory's refusal in the log")
    # Garbage frames, well-formed junk payloads and an oversized frame from known peers,
    # each with the trace it leaves on the target. A payload no honest peer sends gets its
    # sender disconnected and refused for a while: those cases come last, one per bank.
    bank_1, bank_2 = network.banks
    garbage = b"\xc1" * 100
    junk_sync = msgpack.packb([msgpack.packb([5, [[b"x", b"y"]]])])
    oversized = b"\0" * (5 * 1024 * 1024)
    junk_payload = msgpack.packb([b"\x93\x01\x02"])
    junk_vote = msgpack.packb([msgpack.packb([1, b"not a vote"])])
    cases = [
        (bank_1, garbage, logged("sent a malformed frame"), "a garbage frame"),
        (bank_1, junk_sync, counted("sync_unsolicited", "sync_refused"), "junk sync blocks"),
        (bank_1, oversized, logged("link closed with error"), "an oversized frame"),
        (bank_1, junk_payload, counted("payload_malformed"), "a junk payload"),
        # Consensus from a bank: disconnected.
        (bank_2, junk_vote, counted("peer_disconnected"), "a junk consensus message"),
    ]
    for as_id, frame, evidence, what in cases:
        await deliver(network, target, as_id, frame, evidence, f"{target} to handle {what}")


def test_unknown_garbage_and_oversized_peers_are_refused(network: Network) -> None:
    network.start()
    network.wait_height(list(network.entries), 1)
    target = network.validators[0]
    asyncio.run(abuse(network, target))  # each case waits for its trace on the target
    before = network.height(target)
    network.wait_height(list(network.entries), before + 2)  # everyone still finalizes
    assert network.alive(target)


def test_paused_validator_never_blocks_the_others(network: Network) -> None:
    network.start()
    network.wait_height(list(network.entries), 2)
    paused = network.validators[-1]
    others = [n for n in network.entries if n != paused]
    network.processes[paused].send_signal(signal.SIGSTOP)  # alive, reads nothing
    try:
        bank_1, bank_2 = network.banks
        at_pause = max(network.heights(others).values())
        # Traffic large enough to fill the paused peer's socket buffers and send queue.
        for _ in range(3):
            txs = [network.sign_transfer(bank_1, bank_2, 1) for _ in range(200)]
            hashes = [network.submit(bank_1, tx) for tx in txs]
        assert network.wait_final(bank_2, hashes[-1])["status"] == "final"
        network.wait_height(others, at_pause + 10)
    finally:
        network.processes[paused].send_signal(signal.SIGCONT)
    network.wait_height([paused], max(network.heights(others).values()))
