"""The peer port of real node processes in front of a hostile participant (issue 8,
findings 5-7): strangers, a participant that sends junk, and an on-path relay.

A small network runs as real processes; the test itself plays the attacker from other
loopback addresses (127.0.0.2, ...), or plays a genesis participant whose process is not
started, with that participant's real key.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import msgpack
import pytest

from cli.api_client import ApiError
from node.keys import load_key_file
from node.protocol import Txs, encode_payload
from node.transport import PEER_PATH
from node.tx import sign_transfer
from tests.integration.network import Network, dump_logs
from tests.integration.peer_client import HandshakeRefused, PeerClient
from tests.integration.relay import Relay, Tamper

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
        lambda: network.status(validator)["peers"] == network.banks,
        DEADLINE_S,
        "the bank linked with the validator",
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
        network.wait_for(lambda: player in new_log(), DEADLINE_S, "the validator to log the junk")
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
    assert "a payload that does not decode" in written
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
                           amount=1 + i)  # fmt: skip
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
        lambda: counters().get("gossip_tx_refused", 0) + counters().get("gossip_peer_fault", 0),
        DEADLINE_S,
        "the validator to judge the batch",
    )
    seen = counters()
    assert seen.get("gossip_tx_refused", 0) <= 256, seen  # at most one chunk was checked
    assert seen.get("gossip_peer_fault", 0) == 1, seen
    assert closed, "the link stayed open after a badly signed transaction"
    network.wait_height([validator], network.height(validator) + 2)  # still finalizing


# -- finding 7 --------------------------------------------------------------------------


def transfer(
    network: Network, signer: str, to: str, remittance: str, uetr: bytes | None = None
) -> bytes:
    return sign_transfer(
        load_key_file(network.entries[signer].home / "node_key.json"),
        network.genesis.chain_id,
        signer=signer,
        uetr=uetr or uuid.uuid4().bytes,
        expiry_height=max(network.height(network.validators[0]), 0) + 5000,
        from_account=signer,
        to_account=to,
        amount=1234,
        remittance=remittance,
        recipients=network.genesis.remittance_keys(signer, [to]),
    )


def tx_hash(tx: bytes) -> str:
    return hashlib.sha256(tx[64:]).hexdigest()


def known(network: Network, node_id: str, tx: bytes) -> bool:
    """Whether `node_id` knows the transaction at all (pending, final, refused...)."""
    try:
        network.tx_status(node_id, tx_hash(tx))
    except ApiError as exc:
        assert exc.status == 404, exc
        return False
    return True


def gossip(*txs: bytes) -> list[bytes]:
    return [encode_payload(Txs(txs=(tx,))) for tx in txs]


class RelayedLinks:
    """The test's bank-2 links to the validator through an on-path relay."""

    def __init__(self, network: Network, validator: str, player: str) -> None:
        self.network = network
        self.validator = validator
        self.player = player
        host, _, port = network.entries[validator].peer_url.removeprefix("http://").rpartition(":")
        self.relay = Relay(target=(host, int(port)))

    async def connect(self) -> PeerClient:
        url = f"http://127.0.0.1:{self.relay.port}"
        keys = {p.participant_id: p.public_key for p in self.network.genesis.participants}
        return await PeerClient.connect(
            url,
            chain_id=self.network.genesis.chain_id,
            as_id=self.player,
            signing_key=load_key_file(self.network.entries[self.player].home / "node_key.json"),
            target_id=self.validator,
            target_key=keys[self.validator],
        )

    async def send_until_final(self, *txs: bytes) -> None:
        """Over a fresh, untampered link: the node accepts and finalizes `txs`."""
        client = await self.connect()
        await client.send_payloads(gossip(*txs))
        for tx in txs:
            await asyncio.to_thread(self.network.wait_final, self.validator, tx_hash(tx))
        await client.close()


def test_an_on_path_relay_reads_no_transfer(tmp_path: Path, networks: list[Network]) -> None:
    """Issue 8 finding 7 (a): a relay with no key read every transfer and its remittance
    text off the peer link. Now every frame after the handshake is encrypted. (The
    remittance is also sealed to its banks since; the transfer's other bytes are not.)"""
    network, validator, player = small_network(tmp_path, networks)
    links = RelayedLinks(network, validator, player)
    secret = f"invoice {uuid.uuid4()} for grain"
    uetr = uuid.uuid4().bytes
    tx = transfer(network, player, network.banks[0], secret, uetr)

    async def run() -> bytes:
        await links.relay.start()
        await links.send_until_final(tx)
        await links.relay.stop()
        return links.relay.seen()

    seen = asyncio.run(run())
    assert network.tx_status(validator, tx_hash(tx))["status"] == "final"
    assert len(seen) > len(tx)  # the relay did see the link's traffic
    assert secret.encode() not in seen
    assert tx[64:] not in seen and tx[:64] not in seen  # neither the content nor the signature
    assert uetr not in seen  # nor the payment's reference


def test_a_flipped_byte_drops_the_link_and_nothing_of_its_frame(
    tmp_path: Path, networks: list[Network]
) -> None:
    """Issue 8 finding 7 (b): a frame changed on the way is refused as a whole, and the
    link drops; the peer reconnects at once and its transfers are final."""
    network, validator, player = small_network(tmp_path, networks)
    links = RelayedLinks(network, validator, player)
    first = transfer(network, player, network.banks[0], "first of the frame")
    second = transfer(network, player, network.banks[0], "second of the frame")

    def flip_last_byte(index: int, payload: bytes) -> list[bytes]:
        return [payload[:-1] + bytes([payload[-1] ^ 0x01])] if index == 0 else [payload]

    async def run() -> None:
        await links.relay.start()
        links.relay.tamper = flip_last_byte
        client = await links.connect()
        await client.send_payloads(gossip(first, second))  # one frame: both, or neither
        dropped = await client.closed_within(DEADLINE_S)
        await client.close()
        assert not known(network, validator, first), "a transfer of the flipped frame was accepted"
        assert dropped, "the link survived a flipped frame"
        await links.send_until_final(first, second)  # reconnected at once
        await links.relay.stop()

    asyncio.run(run())
    network.wait_height([validator], network.height(validator) + 2)


def test_injected_and_replayed_frames_drop_the_link_and_are_not_accepted(
    tmp_path: Path, networks: list[Network]
) -> None:
    """Issue 8 finding 7 (c): a relay inserted frames that the listener attributed to the
    authenticated peer. Now a frame the relay inserts, or one it sends again, fails its
    authentication, and the link drops before anything of it is accepted."""
    network, validator, player = small_network(tmp_path, networks)
    links = RelayedLinks(network, validator, player)
    # A genuine transfer the relay got hold of elsewhere; it sends it as if from bank-2.
    planted = transfer(network, network.banks[0], player, "planted by the relay")
    honest = transfer(network, player, network.banks[0], "sent by bank-2")
    again = transfer(network, player, network.banks[0], "sent twice by the relay")
    frame_of_planted = msgpack.packb(gossip(planted), use_bin_type=True)

    def inject_before_first(index: int, payload: bytes) -> list[bytes]:
        return [frame_of_planted, payload] if index == 0 else [payload]

    def replay_first(index: int, payload: bytes) -> list[bytes]:
        return [payload, payload] if index == 0 else [payload]

    async def attack(tamper: Tamper, tx: bytes) -> bool:
        links.relay.tamper = tamper
        client = await links.connect()
        await client.send_payloads(gossip(tx))
        dropped = await client.closed_within(DEADLINE_S)
        await client.close()
        return dropped

    async def run() -> tuple[bool, bool]:
        await links.relay.start()
        injected_dropped = await attack(inject_before_first, honest)
        await links.send_until_final(honest)
        replayed_dropped = await attack(replay_first, again)
        await links.send_until_final(again)
        await links.relay.stop()
        return injected_dropped, replayed_dropped

    injected_dropped, replayed_dropped = asyncio.run(run())
    assert not known(network, validator, planted), "the injected transfer was accepted"
    assert injected_dropped, "the link survived an injected frame"
    assert replayed_dropped, "the link survived a replayed frame"
    network.wait_height([validator], network.height(validator) + 2)
