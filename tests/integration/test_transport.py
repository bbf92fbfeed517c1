"""Peer links over real loopback sockets: delivery, batching, bounded send queues. Bad
peers (unknown ids, wrong keys, bad frames, handshake floods) are test_peer_security.py's."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import msgpack
import pytest
from aiohttp import web
from nacl.signing import SigningKey

from node.transport import PEER_PATH, PeerAddress, PeerNetwork, TransportLimits
from tests.integration.waiting import wait_for_async, within

CHAIN = "somnet-test"
LIMITS = TransportLimits(
    frame_bytes_max=64 * 1024,
    backoff_ms_min=20,
    backoff_ms_max=200,
    # Longer than any step of a test, so that an idle connection that a test opened holds
    # its handshake slot until the test closes it, however slow the machine is.
    handshake_timeout_ms=120_000,
)
DEADLINE_S = 30
DOWN_PEER = "d"
"""Known to every host but never running: a raw link speaking as it competes with no
real peer (a raw link as "b" would be closed as soon as the real b redials)."""


def key(name: str) -> SigningKey:
    return SigningKey(hashlib.sha256(name.encode()).digest())


@dataclass
class Host:
    name: str
    network: PeerNetwork | None = None
    runner: web.AppRunner | None = None
    url: str = ""
    received: list[tuple[str, bytes]] = field(default_factory=list)


async def listen(host: Host) -> None:
    app = web.Application()
    runner = web.AppRunner(app)
    host.runner = runner

    async def accept(request: web.Request) -> web.StreamResponse:
        # The network is built after the port is known, so route through the host.
        return await host_network(host)._accept(request)

    app.router.add_routes([web.get(PEER_PATH, accept)])
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    host.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def host_network(host: Host) -> PeerNetwork:
    assert host.network is not None
    return host.network


@pytest.fixture
async def trio() -> AsyncIterator[dict[str, Host]]:
    hosts = {name: Host(name) for name in ("a", "b", "c")}
    for host in hosts.values():
        await listen(host)
    known = {name: bytes(key(name).verify_key) for name in (*hosts, DOWN_PEER)}
    for host in hosts.values():
        peers = [PeerAddress(peer_id=o.name, url=o.url) for o in hosts.values() if o is not host]
        host.network = PeerNetwork(
            chain_id=CHAIN,
            self_id=host.name,
            signing_key=key(host.name),
            known_keys=known,
            peers=peers,
            on_payload=lambda peer, payload, h=host: h.received.append((peer, payload)),
            limits=LIMITS,
        )
    for host in hosts.values():
        await host_network(host).start()
    yield hosts
    for host in hosts.values():
        await host_network(host).stop()
        assert host.runner is not None
        await host.runner.cleanup()


async def test_authenticated_peers_exchange_batched_payloads(trio: dict[str, Host]) -> None:
    a, b, c = trio["a"], trio["b"], trio["c"]
    await wait_connected(a)
    payloads = [i.to_bytes(4, "big") for i in range(500)]
    for payload in payloads:
        host_network(a).broadcast(payload)
    await wait_for_async(
        lambda: len(b.received) == 500 and len(c.received) == 500,
        DEADLINE_S,
        "500 payloads at b and at c",
        seen=lambda: (len(b.received), len(c.received)),
    )
    assert b.received == [("a", p) for p in payloads]  # order kept within one link
    assert c.received == [("a", p) for p in payloads]


async def wait_connected(host: Host) -> None:
    """Until `host` has links in both directions with both real peers: their handshakes
    are done, so they hold no handshake slot and will not redial during the test."""
    await wait_for_async(
        lambda: len(host_network(host).connected_peers()) == 2,
        DEADLINE_S,
        f"{host.name} linked with both peers",
        seen=host_network(host).connected_peers,
    )


async def receive(ws: aiohttp.ClientWebSocketResponse, what: str) -> aiohttp.WSMessage:
    return await within(ws.receive(), DEADLINE_S, what)


async def test_full_queue_drops_oldest_and_never_blocks() -> None:
    network = PeerNetwork(
        chain_id=CHAIN,
        self_id="a",
        signing_key=key("a"),
        known_keys={"a": bytes(key("a").verify_key), "b": bytes(key("b").verify_key)},
        peers=[PeerAddress(peer_id="b", url="http://127.0.0.1:9")],
        on_payload=lambda peer, payload: None,
        limits=TransportLimits(queue_payloads_max=3),
    )
    for i in range(5):
        network.send("b", bytes([i]))
    assert network.counters["send_dropped_queue_full"] == 2
    assert msgpack.unpackb(network._next_frame("b")) == [b"\2", b"\3", b"\4"]


async def test_queue_is_bounded_in_bytes_too() -> None:
    network = PeerNetwork(
        chain_id=CHAIN,
        self_id="a",
        signing_key=key("a"),
        known_keys={"a": bytes(key("a").verify_key), "b": bytes(key("b").verify_key)},
        peers=[PeerAddress(peer_id="b", url="http://127.0.0.1:9")],
        on_payload=lambda peer, payload: None,
        limits=TransportLimits(queue_bytes_max=1000),
    )
    for i in range(10):
        network.send("b", bytes([i]) * 300)
    assert network.counters["send_dropped_queue_full"] == 7  # three of 300 bytes fit
    assert [p[0] for p in msgpack.unpackb(network._next_frame("b"))] == [7, 8, 9]
    assert network._next_frame("b") == b""


async def test_a_peer_admitted_while_running_is_refused_until_known_then_linked() -> None:
    """Keys are looked up per handshake (node/main.py passes the ledger's), and a peer
    admitted later is added to a running network."""
    a, n = Host("a"), Host("n")
    for host in (a, n):
        await listen(host)
    keys_at_a = {"a": bytes(key("a").verify_key)}
    a.network = PeerNetwork(
        chain_id=CHAIN, self_id="a", signing_key=key("a"), known_keys=keys_at_a.get,
        peers=[], on_payload=lambda peer, payload: a.received.append((peer, payload)),
        limits=LIMITS,
    )  # fmt: skip
    n.network = PeerNetwork(
        chain_id=CHAIN, self_id="n", signing_key=key("n"),
        known_keys={name: bytes(key(name).verify_key) for name in ("a", "n")},
        peers=[PeerAddress(peer_id="a", url=a.url)],
        on_payload=lambda peer, payload: n.received.append((peer, payload)),
        limits=LIMITS,
    )  # fmt: skip
    try:
        await a.network.start()
        await n.network.start()
        await wait_for_async(
            lambda: host_network(a).counters["handshake_refused"] >= 1,
            DEADLINE_S,
            "a refused the unknown n",
            seen=lambda: dict(host_network(a).counters),
        )
        assert a.network.connected_peers() == []
        keys_at_a["n"] = bytes(key("n").verify_key)  # the ledger admitted n
        a.network.add_peer(PeerAddress(peer_id="n", url=n.url))
        await wait_for_async(
            lambda: (
                host_network(a).connected_peers() == ["n"]
                and host_network(n).connected_peers() == ["a"]
            ),
            DEADLINE_S,
            "a and n linked both ways",
            seen=lambda: (host_network(a).connected_peers(), host_network(n).connected_peers()),
        )
        a.network.send("n", b"welcome")
        n.network.send("a", b"thanks")
        await wait_for_async(
            lambda: n.received == [("a", b"welcome")] and a.received == [("n", b"thanks")],
            DEADLINE_S,
            "one payload each way",
        )
    finally:
        for host in (a, n):
            await host_network(host).stop()
            assert host.runner is not None
            await host.runner.cleanup()
