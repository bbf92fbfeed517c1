"""Peer links over real loopback sockets: authentication, batching, bad peers."""

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

from node.transport import PEER_PATH, TAG_DIALER, PeerAddress, PeerNetwork, TransportLimits

CHAIN = "somnet-test"
LIMITS = TransportLimits(frame_bytes_max=64 * 1024, backoff_ms_min=20, backoff_ms_max=200)


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


async def wait_until(predicate: object, timeout_s: float = 10.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polls state another component owns
            await asyncio.sleep(0.01)


@pytest.fixture
async def trio() -> AsyncIterator[dict[str, Host]]:
    hosts = {name: Host(name) for name in ("a", "b", "c")}
    for host in hosts.values():
        await listen(host)
    known = {name: bytes(key(name).verify_key) for name in hosts}
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
    await wait_until(lambda: len(host_network(a).connected_peers()) == 2)
    payloads = [i.to_bytes(4, "big") for i in range(500)]
    for payload in payloads:
        host_network(a).broadcast(payload)
    await wait_until(lambda: len(b.received) == 500 and len(c.received) == 500)
    assert b.received == [("a", p) for p in payloads]  # order kept within one link
    assert c.received == [("a", p) for p in payloads]


async def dial_raw(url: str, hello: list[object]) -> tuple[aiohttp.ClientSession, object]:
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(url + PEER_PATH)
    await ws.send_bytes(msgpack.packb(hello))
    return session, ws


async def test_unknown_key_is_refused(trio: dict[str, Host]) -> None:
    a = trio["a"]
    session, ws = await dial_raw(a.url, [CHAIN, "mallory", "a", b"\0" * 32])
    assert isinstance(ws, aiohttp.ClientWebSocketResponse)
    msg = await ws.receive()
    assert msg.type == aiohttp.WSMsgType.CLOSE
    await session.close()
    assert host_network(a).counters["handshake_refused"] == 1


async def test_known_id_with_wrong_key_is_refused(trio: dict[str, Host]) -> None:
    a = trio["a"]
    session, ws = await dial_raw(a.url, [CHAIN, "b", "a", b"\1" * 32])
    assert isinstance(ws, aiohttp.ClientWebSocketResponse)
    challenge = msgpack.unpackb((await ws.receive()).data)
    assert len(challenge) == 2
    forged = key("mallory").sign(b"whatever").signature  # not b's key
    await ws.send_bytes(msgpack.packb([forged]))
    assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
    await session.close()
    assert host_network(a).counters["handshake_bad_signature"] == 1
    assert all(peer != "b" or payload for peer, payload in a.received)


async def authenticated_raw_link(
    url: str, as_id: str, target: str
) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    """Complete a genuine handshake as `as_id`, then hand the raw socket to the test."""
    nonce = b"\3" * 32
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(url + PEER_PATH)
    await ws.send_bytes(msgpack.packb([CHAIN, as_id, target, nonce]))
    listener_nonce, _ = msgpack.unpackb((await ws.receive()).data)
    signed = msgpack.packb([TAG_DIALER, CHAIN, as_id, target, listener_nonce, nonce])
    await ws.send_bytes(msgpack.packb([key(as_id).sign(signed).signature]))
    return session, ws


@pytest.mark.parametrize(
    ("junk", "counter"),
    [
        (b"\xc1\xc1garbage", "frame_malformed"),
        (msgpack.packb([1, 2, 3]), "frame_malformed"),
        (b"x" * (LIMITS.frame_bytes_max + 1), "link_error"),
    ],
)
async def test_garbage_and_oversized_frames_close_the_link(
    trio: dict[str, Host], junk: bytes, counter: str
) -> None:
    a = trio["a"]
    session, ws = await authenticated_raw_link(a.url, "b", "a")
    await ws.send_bytes(junk)
    assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await session.close()
    await wait_until(lambda: host_network(a).counters[counter] == 1)
    assert a.received == []
    # The node still serves its real peers.
    await wait_until(lambda: len(host_network(a).connected_peers()) == 2)
    host_network(trio["b"]).send("a", b"still alive")
    await wait_until(lambda: ("b", b"still alive") in a.received)


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


async def test_unauthenticated_connections_are_bounded(trio: dict[str, Host]) -> None:
    a = trio["a"]
    limit = host_network(a).limits.handshakes_max
    session = aiohttp.ClientSession()
    try:
        # Connections that never say hello hold a handshake slot until their timeout.
        idle = [await session.ws_connect(a.url + PEER_PATH) for _ in range(limit)]
        extra = await session.ws_connect(a.url + PEER_PATH)
        assert (await extra.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert host_network(a).counters["handshake_busy"] == 1
        for ws in idle:
            await ws.close()
    finally:
        await session.close()
    # Real peers still get in once the slots are free.
    host_network(trio["b"]).send("a", b"after the flood")
    await wait_until(lambda: ("b", b"after the flood") in a.received)
