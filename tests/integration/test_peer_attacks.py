"""The peer port of real node processes in front of a hostile participant (issue 8,
findings 5-7): strangers, a participant that sends junk, and an on-path relay.

A small network runs as real processes; the test itself plays the attacker from other
loopback addresses (127.0.0.2, ...), or plays a genesis participant whose process is not
started, with that participant's real key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from node.transport import PEER_PATH
from tests.integration.network import Network, dump_logs

pytestmark = [pytest.mark.network, pytest.mark.xdist_group("network")]


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
