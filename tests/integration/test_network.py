"""A real network of node processes: finality, crashes, halts, late joiners, bad peers."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import msgpack
import pytest

from node.keys import load_key_file
from node.transport import PEER_PATH, TAG_DIALER
from tests.integration.network import Network, dump_logs

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


def assert_same_chain(network: Network, nodes: list[str], height: int) -> None:
    for h in range(1, height + 1):
        blocks = [network.block(n, h) for n in nodes]
        assert len({b["block_hash"] for b in blocks}) == 1, (h, blocks)
        assert len({b["app_hash"] for b in blocks}) == 1, (h, blocks)


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
    top = max(f["height"] for f in finals)
    network.wait_height(everyone, top)
    assert_same_chain(network, everyone, top)
    start = 100_000_000_000  # the devnet issuance per bank, in tyiyn
    moved = sum(100 + i for i in range(20)) - 20
    for node in everyone:
        assert network.balance(node, bank_1) == start - moved
        assert network.balance(node, bank_2) == start + moved


def test_killed_validator_catches_up_and_votes_again(network: Network) -> None:
    network.start()
    network.wait_height(list(network.entries), 2)
    victim = network.validators[-1]
    time.sleep(0.37)  # kill at some point inside a height, not at a boundary
    network.kill9(victim)
    others = [n for n in network.entries if n != victim]
    at_kill = max(network.height(n) for n in others)
    network.wait_height(others, at_kill + 5)  # 3 of 4 validators keep finalizing
    network.start(victim)
    network.wait_height([victim], max(network.height(n) for n in others))
    # Votes again: with another validator down, progress needs the restarted one.
    second = network.validators[-2]
    network.kill9(second)
    resumed = max(network.height(n) for n in network.entries if n != second)
    network.wait_height([victim, network.validators[0]], resumed + 3)
    network.start(second)
    network.wait_height([second], resumed + 3)
    assert network.evidence_count() == 0  # no validator saw a conflicting signature


def test_two_of_four_down_halts_safely_and_resumes(network: Network) -> None:
    network.start()
    network.wait_height(list(network.entries), 2)
    down = network.validators[-2:]
    for node in down:
        network.kill9(node)
    up = [n for n in network.entries if n not in down]
    time.sleep(1.5)  # a decision already in flight may still land
    halted = {n: network.height(n) for n in up}
    bank_1, bank_2 = network.banks
    tx_hash = network.submit(bank_1, network.sign_transfer(bank_1, bank_2, 777))
    time.sleep(3)
    assert {n: network.height(n) for n in up} == halted  # no block without 2/3
    assert network.tx_status(bank_1, tx_hash)["status"] == "pending"  # nothing lost
    network.start(*down)
    final = network.wait_final(bank_2, tx_hash)
    assert final["status"] == "final"
    assert final["height"] > max(halted.values())
    assert_same_chain(network, list(network.entries), final["height"])


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
        assert_same_chain(network, [bank_1, late], target)
    finally:
        codes = network.stop_all()
    assert all(code == 0 for code in codes.values()), (codes, dump_logs(network))


async def raw_link(
    url: str, as_id: str, target: str, network: Network
) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    """A genuine handshake with a genesis key, then the raw socket for abuse."""
    key = load_key_file(network.entries[as_id].home / "node_key.json")
    nonce = b"\1" * 32
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(url + PEER_PATH, max_msg_size=0)
    await ws.send_bytes(msgpack.packb([network.genesis.chain_id, as_id, target, nonce]))
    listener_nonce, _ = msgpack.unpackb((await ws.receive()).data)
    signed = msgpack.packb(
        [TAG_DIALER, network.genesis.chain_id, as_id, target, listener_nonce, nonce]
    )
    await ws.send_bytes(msgpack.packb([key.sign(signed).signature]))
    return session, ws


async def abuse(network: Network, target: str) -> None:
    url = network.entries[target].peer_url
    bank = network.banks[0]
    # An unknown identity.
    async with aiohttp.ClientSession() as session, session.ws_connect(url + PEER_PATH) as ws:
        await ws.send_bytes(
            msgpack.packb([network.genesis.chain_id, "mallory", target, b"\0" * 32])
        )
        assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    # Garbage frames, well-formed junk payloads and an oversized frame from a known peer.
    for frame in (
        b"\xc1" * 100,
        msgpack.packb([b"\x93\x01\x02"]),
        msgpack.packb([msgpack.packb([1, b"not a vote"])]),
        msgpack.packb([msgpack.packb([5, [[b"x", b"y"]]])]),
        b"\0" * (5 * 1024 * 1024),
    ):
        session, ws = await raw_link(url, bank, target, network)
        try:
            await ws.send_bytes(frame)
            await asyncio.wait_for(ws.receive(), timeout=2)
        except TimeoutError:
            pass  # a dropped payload keeps the link; only bad frames close it
        except (ConnectionError, aiohttp.ClientError):
            pass  # the node closed the link while the oversized frame was in flight
        finally:
            await ws.close()
            await session.close()


def test_unknown_garbage_and_oversized_peers_are_refused(network: Network) -> None:
    network.start()
    network.wait_height(list(network.entries), 1)
    target = network.validators[0]
    asyncio.run(abuse(network, target))
    before = network.height(target)
    network.wait_height(list(network.entries), before + 2)  # everyone still finalizes
    log = network.log(target)
    assert "refused: unknown id 'mallory'" in log
    assert "malformed frame" in log
    assert "link closed with error" in log  # the oversized frame
    assert network.alive(target)


def test_paused_validator_never_blocks_the_others(network: Network) -> None:
    network.start()
    network.wait_height(list(network.entries), 2)
    paused = network.validators[-1]
    network.processes[paused].send_signal(signal.SIGSTOP)  # alive, reads nothing
    try:
        others = [n for n in network.entries if n != paused]
        bank_1, bank_2 = network.banks
        at_pause = max(network.height(n) for n in others)
        # Traffic large enough to fill the paused peer's socket buffers and send queue.
        for _ in range(3):
            txs = [network.sign_transfer(bank_1, bank_2, 1) for _ in range(200)]
            hashes = [network.submit(bank_1, tx) for tx in txs]
        assert network.wait_final(bank_2, hashes[-1])["status"] == "final"
        network.wait_height(others, at_pause + 10)
    finally:
        network.processes[paused].send_signal(signal.SIGCONT)
    network.wait_height([paused], max(network.height(n) for n in network.entries if n != paused))
