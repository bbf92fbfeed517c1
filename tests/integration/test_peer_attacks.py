"""The peer port of real node processes in front of a hostile participant (issue 8,
findings 5-7): strangers, a participant that sends junk, and an on-path relay.

A small network runs as real processes; the test itself plays the attacker from other
loopback addresses (127.0.0.2, ...), or plays a genesis participant whose process is not
started, with that participant's real key.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from node.keys import load_key_file
from node.protocol import Txs, encode_payload
from node.transport import PEER_PATH
from node.tx import sign_transfer
from tests.integration.network import Network, dump_logs
from tests.integration.peer_client import HandshakeRefused, PeerClient

pytestmark = [pytest.mark.network, pytest.mark.xdist_group("network")]

DEADLINE_S = 30.0


@pytest.fixture
def networks() -> Iterator[list[Network]]:
    """Networks a test creates; every node must stop cleanly (exit 0) at the end."""
    created: list[Network] = []
    yield created
    for network in created:
        codes = network.stop_all()
        assert all(code == 0 for code in codes.values()), (codes, dump_logs(network))


async def upgrade_status(url: str, source_address: str) -> int:
    """The HTTP status the peer port answers a WebSocket upgrade from `source_address`."""
    connector = aiohttp.TCPConnector(local_addr=(source_address, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            async with session.ws_connect(url + PEER_PATH) as ws:
                await ws.close()
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


# -- finding 5 --------------------------------------------------------------------------


def test_only_genesis_addresses_reach_the_handshake(
    tmp_path: Path, networks: list[Network]
) -> None:
    """Issue 8 finding 5: with `[p2p] allow_only_genesis_addresses = true`, a connection
    from an address that genesis does not name is refused before the WebSocket upgrade,
    so it never takes a handshake slot; the genesis participants still connect."""
    network = Network.create(
        tmp_path, validators=1, banks=1, env={"SOMNET_P2P_ALLOW_ONLY_GENESIS_ADDRESSES": "true"}
    )
    networks.append(network)
    network.start()
    everyone = list(network.entries)
    network.wait_height(everyone, 1)
    validator = network.validators[0]
    url = network.entries[validator].peer_url
    assert asyncio.run(upgrade_status(url, "127.0.0.2")) == 403
    assert asyncio.run(upgrade_status(url, "127.0.0.1")) == 101  # the handshake decides
    network.wait_for(
        "the bank linked with the validator",
        lambda: network.status(validator)["peers"] == network.banks,
    )
    assert network.status(network.banks[0])["peers"] == [validator]


# -- finding 6 --------------------------------------------------------------------------


def small_network(tmp_path: Path, networks: list[Network]) -> tuple[Network, str, str]:
    """One validator and bank-1 running; bank-2 is played by the test. Returns the network,
    the validator's id and the id the test plays."""
    network = Network.create(tmp_path, validators=1, banks=2)
    networks.append(network)
    validator, (bank_1, bank_2) = network.validators[0], network.banks
    network.start(validator, bank_1)
    network.wait_height([validator, bank_1], 1)
    return network, validator, bank_2


async def connect_as(network: Network, as_id: str, target: str) -> PeerClient:
    keys = {p.participant_id: p.public_key for p in network.genesis.participants}
    return await PeerClient.connect(
        network.entries[target].peer_url,
        chain_id=network.genesis.chain_id,
        as_id=as_id,
        signing_key=load_key_file(network.entries[as_id].home / "node_key.json"),
        target_id=target,
        target_key=keys[target],
    )


def test_a_malformed_payload_closes_the_link_and_writes_one_line(
    tmp_path: Path, networks: list[Network]
) -> None:
    """Issue 8 finding 6: each malformed payload wrote a WARNING line and kept the link, so
    a 300 KB frame wrote 10 MB of log. Now the first one closes the link, the peer is held
    off for a while, and repeated lines are throttled."""
    network, validator, player = small_network(tmp_path, networks)
    log_size = len(network.log(validator))

    async def attack() -> tuple[bool, bool]:
        client = await connect_as(network, player, validator)
        junk = [b"\xc1" + i.to_bytes(4, "big") * 24 for i in range(3000)]  # ~300 KB
        await client.send_payloads(junk)
        closed = await client.closed_within(DEADLINE_S)
        await client.close()
        network.wait_for("the validator to log the junk", lambda: player in new_log())
        try:
            again = await connect_as(network, player, validator)
        except HandshakeRefused:
            return closed, False
        held_off = await again.closed_within(2.0)
        await again.close()
        return closed, not held_off

    def new_log() -> str:
        return network.log(validator)[log_size:]

    closed, redial_accepted = asyncio.run(attack())
    written = new_log()
    assert len(written) < 4_000, (len(written), written[:2000])
    assert closed, "the link stayed open after a malformed payload"
    assert not redial_accepted, "the peer was let in again at once"
    assert "malformed payload" in written
    network.wait_height([validator], network.height(validator) + 2)  # still finalizing


def test_badly_signed_transactions_cost_the_sender_not_the_node(
    tmp_path: Path, networks: list[Network]
) -> None:
    """Issue 8 finding 6: a frame of 25,000 badly signed transactions was verified on the
    event loop, one by one. Now signatures are checked in a worker thread, per peer, and
    the first bad one ends the batch and the link: no honest peer gossips one."""
    network, validator, player = small_network(tmp_path, networks)
    key = load_key_file(network.entries[player].home / "node_key.json")
    txs = []
    for i in range(20_000):
        tx = sign_transfer(key, network.genesis.chain_id, signer=player, uetr=uuid.uuid4().bytes,
                           expiry_height=1000, from_account=player, to_account=network.banks[0],
                           amount=1 + i, remittance="x")  # fmt: skip
        txs.append(bytes([tx[0] ^ 1]) + tx[1:])  # the signature no longer verifies
    payloads = [encode_payload(Txs(txs=tuple(txs[i : i + 10_000]))) for i in (0, 10_000)]

    def counters() -> dict[str, int]:
        return {k: int(v) for k, v in network.status(validator)["counters"].items()}

    async def attack() -> bool:
        client = await connect_as(network, player, validator)
        await client.send_payloads(payloads)
        closed = await client.closed_within(DEADLINE_S)
        await client.close()
        return closed

    closed = asyncio.run(attack())
    network.wait_for(
        "the validator to judge the batch",
        lambda: counters().get("gossip_tx_refused", 0) + counters().get("gossip_peer_fault", 0),
    )
    seen = counters()
    assert seen.get("gossip_tx_refused", 0) <= 256, seen  # at most one chunk was checked
    assert seen.get("gossip_peer_fault", 0) == 1, seen
    assert closed, "the link stayed open after a badly signed transaction"
    network.wait_height([validator], network.height(validator) + 2)  # still finalizing
