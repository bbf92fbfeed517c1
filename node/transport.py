"""Encrypted, authenticated peer links over aiohttp WebSockets, with batched binary frames.

Theory of operation:
- Each node dials every configured peer and uses that outbound link only to send; what
  a peer sends arrives on the link the peer dialed (inbound). Two one-way links per pair
  avoid the race of deciding which of two simultaneous connections to keep. A failed
  dial is retried after a backoff that doubles up to `backoff_ms_max`, cut short when
  that peer dials us: a restarted node then hears its peers at once, not seconds later.
- A link starts with the handshake of node/channel.py: ephemeral X25519 keys in both
  directions (Noise NN), whose transcript (chain id, both ids, both ephemeral keys) each
  side signs with its Ed25519 key. Keys come from the ledger, looked up at each handshake
  (`known_keys`): governance admits participants and rotates keys while nodes run, and
  a rotated key is the only one accepted once the ledger holds it. An unknown id or a
  wrong key closes the link. Peers admitted while the node runs are added (`add_peer`).
  Every frame after the handshake is sealed with ChaCha20-Poly1305 under the link's own
  key and a counter: a frame that fails to open (altered, replayed,
  reordered or inserted on the path) closes the link, and nothing in it is delivered.
  Such a frame may come from the path, not the peer, so it costs the peer no hold-off.
- Sending never blocks the caller: each peer has a bounded queue, and a full queue drops
  its oldest payload (consensus re-broadcasts, gossip is best effort), so one slow peer
  never holds up the others. A sender task packs queued payloads into one frame, up to
  `frame_bytes_max`, so many small messages cost one syscall.
- Inbound frames larger than `frame_bytes_max` close the link (aiohttp enforces it);
  malformed frames are counted and close the link. Nothing from a peer raises past here.
- Anyone can reach the peer port, so a connection that has not authenticated yet costs
  little and holds little: it gets `handshake_timeout_ms` to finish; each source address
  may have `handshakes_per_address_max` connections in their handshake (more are refused
  before the WebSocket upgrade); and when all `handshakes_max` slots are taken, a newcomer
  evicts the oldest handshake of the address that holds the most, so a flood from a few
  addresses never keeps a genuine peer out. Optionally (`allowed_hosts`), only the
  addresses genesis names may connect at all. Warnings about peers are throttled.
- A payload handler may return an awaitable (a batch of transactions to verify): the
  link waits for it before the next payload, so one link's payloads take effect in order
  and a peer that sends faster than we check waits its turn.
- `disconnect(peer_id, reason)` is for a peer that sent what no honest peer sends (a
  payload that does not decode): it closes both links and refuses the peer, inbound and
  outbound, for a hold-off that doubles with each fault up to `holdoff_ms_max`.
  `on_peer_down` is called whenever a peer's inbound link ends, before a new one from the
  same peer delivers anything, so that what the peer claimed can be forgotten.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field

import aiohttp
import msgpack
from aiohttp import web
from nacl.signing import SigningKey

from node.channel import (
    TAG_DIALER,
    TAG_LISTENER,
    TAG_SIZE,
    Channel,
    ChannelError,
    DialerHandshake,
    ListenerHandshake,
    decode_hello,
)
from node.clock import Clock, SystemClock
from node.events_wait import wait_event
from node.throttled_log import ThrottledLog

__all__ = [
    "PEER_PATH",
    "TAG_DIALER",
    "TAG_LISTENER",
    "PeerAddress",
    "PeerNetwork",
    "TransportLimits",
    "dial_handshake",
]

log = logging.getLogger(__name__)

PEER_PATH = "/peer"
DIAL_TIMEOUT_S = 5.0  # to open a TCP connection to a peer
CLOSE_TIMEOUT_S = 1.0  # how long a closing link waits for the other side's close frame
RESOLVE_INTERVAL_MS = 30_000  # allowed host names are resolved again at most this often
RESOLVE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportLimits:
    frame_bytes_max: int = 4 * 1024 * 1024
    """Largest WebSocket frame accepted or sent, sealed (16 bytes more than the batch in
    it); a larger inbound frame closes the link."""
    queue_payloads_max: int = 10_000
    """Payloads queued per peer before the oldest is dropped."""
    queue_bytes_max: int = 64 * 1024 * 1024
    """Bytes queued per peer before the oldest payloads are dropped."""
    handshake_timeout_ms: int = 2_000
    """From the WebSocket upgrade to an authenticated link: three messages, one round trip
    and a half, so even a slow WAN link finishes well within it."""
    handshakes_max: int = 64
    """Unauthenticated connections in their handshake at once; a newcomer beyond it evicts
    the oldest handshake of the address holding the most."""
    handshakes_per_address_max: int = 8
    """Connections in their handshake from one source address; more are refused."""
    backoff_ms_min: int = 100
    backoff_ms_max: int = 5_000
    holdoff_ms_min: int = 5_000
    """How long a disconnected peer is refused after its first fault; doubles with each."""
    holdoff_ms_max: int = 60_000


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerAddress:
    peer_id: str
    url: str
    """Base URL of the peer's listener, e.g. http://127.0.0.1:26656."""


FrameHandler = Callable[[str, bytes], Awaitable[None] | None]
"""Called with (peer id, payload); an awaitable it returns is awaited before the link's
next payload."""


def _no_peer_down(peer_id: str) -> None:
    pass


@dataclass(slots=True)
class _Handshake:
    """A slot held by one unauthenticated connection while it is in its handshake."""

    address: str
    evicted: asyncio.Event = field(default_factory=asyncio.Event)


def normalized_address(text: str | None) -> str:
    """An IP address as text in one canonical form (IPv4-mapped IPv6 as IPv4), so that a
    remote address and an allowed one compare equal; anything else unchanged."""
    if text is None:
        return ""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _pack(obj: object) -> bytes:
    packed = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


class PeerNetwork:
    """The node's links to its peers: dial, authenticate, send batched, receive."""

    def __init__(
        self,
        *,
        chain_id: str,
        self_id: str,
        signing_key: SigningKey,
        known_keys: Mapping[str, bytes] | Callable[[str], bytes | None],
        peers: list[PeerAddress],
        on_payload: FrameHandler,
        limits: TransportLimits,
        allowed_hosts: Collection[str] | None = None,
        on_peer_down: Callable[[str], None] = _no_peer_down,
        clock: Clock | None = None,
    ) -> None:
        """Args:
        known_keys: each participant's key by id, or a function looking one up at each
            handshake (None: unknown id). A node not known yet (admitted, still syncing)
            may dial, but is refused until the peers' ledgers know it.
        allowed_hosts: if given, only connections from these hosts (IP addresses or
            names, resolved at most every RESOLVE_INTERVAL_MS) reach the handshake.
        on_peer_down: called with a peer's id when its inbound link ends.
        """
        assert all(p.peer_id != self_id for p in peers)
        assert limits.handshakes_per_address_max <= limits.handshakes_max
        self.chain_id = chain_id
        self.self_id = self_id
        self._key = signing_key
        self._key_of = dict(known_keys).get if isinstance(known_keys, Mapping) else known_keys
        self._peers = {p.peer_id: p for p in peers}
        self._on_payload = on_payload
        self._on_peer_down = on_peer_down
        self.limits = limits
        self._queues: dict[str, collections.deque[bytes]] = {
            p: collections.deque() for p in self._peers
        }
        self._queued_bytes: dict[str, int] = dict.fromkeys(self._peers, 0)
        self._wakeups: dict[str, asyncio.Event] = {p: asyncio.Event() for p in self._peers}
        # Set when a peer whose outbound link is down dials us: it is up again, and
        # waiting out the backoff would keep a restarted node deaf for seconds.
        self._redials: dict[str, asyncio.Event] = {p: asyncio.Event() for p in self._peers}
        self._outbound: set[str] = set()
        self._outbound_links: dict[str, aiohttp.ClientWebSocketResponse] = {}
        self._held_off_until_ms: dict[str, int] = {}  # peer -> refused until (clock ms)
        self._holdoff_ms_next: dict[str, int] = {}
        self._closing: set[asyncio.Task[bool]] = set()
        self._clock = clock if clock is not None else SystemClock()
        self._log = ThrottledLog(log, clock=self._clock)
        # Unauthenticated connections in their handshake, by source address, oldest first.
        self._handshakes: dict[str, collections.deque[_Handshake]] = {}
        self._handshake_count = 0
        self._allowed_hosts = None if allowed_hosts is None else frozenset(allowed_hosts)
        self._started = False
        self._allowed_addresses: frozenset[str] = frozenset()
        self._resolved_at_ms: int | None = None
        self._inbound: dict[str, web.WebSocketResponse] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self.counters: collections.Counter[str] = collections.Counter()

    # -- lifecycle ---------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [web.get(PEER_PATH, self._accept)]

    async def start(self) -> None:
        assert self._session is None
        # A dial must fail fast and look the peer up again: a peer that came back at a new
        # address (a container created again) is otherwise dialed at its old one until the
        # kernel gives up on the SYN, minutes later.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=DIAL_TIMEOUT_S),
            connector=aiohttp.TCPConnector(use_dns_cache=False),
        )
        if self._allowed_hosts is not None:
            # Before any peer knocks, so the first ones are not refused while we look up.
            self._resolved_at_ms = self._clock.now_ms()
            self._allowed_addresses = await self._resolve(self._allowed_hosts)
        self._started = True
        for peer_id in self._peers:
            self._tasks.append(asyncio.create_task(self._dial_forever(peer_id)))

    def add_peer(self, peer: PeerAddress, host: str | None = None) -> None:
        """Dial a peer admitted since start (nothing if it is known already, or is this
        node). `host`: where it connects from, allowed when only some hosts are."""
        if peer.peer_id in self._peers or peer.peer_id == self.self_id:
            return
        self._peers[peer.peer_id] = peer
        self._queues[peer.peer_id] = collections.deque()
        self._queued_bytes[peer.peer_id] = 0
        self._wakeups[peer.peer_id] = asyncio.Event()
        self._redials[peer.peer_id] = asyncio.Event()
        if self._allowed_hosts is not None and host and host not in self._allowed_hosts:
            self._allowed_hosts |= {host}
            self._resolved_at_ms = None  # resolved again at the next unknown address
        if self._started:
            self._tasks.append(asyncio.create_task(self._dial_forever(peer.peer_id)))

    def peer_ids(self) -> list[str]:
        """The peers this node dials."""
        return list(self._peers)

    async def stop(self) -> None:
        self._started = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for ws in list(self._inbound.values()):
            await ws.close()
        await asyncio.gather(*self._closing, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- sending -----------------------------------------------------------------------

    def send(self, peer_id: str, payload: bytes) -> None:
        """Queue `payload` for `peer_id`; never blocks. The oldest is dropped when full."""
        queue = self._queues.get(peer_id)
        if queue is None:
            self.counters["send_unknown_peer"] += 1
            return
        self._queued_bytes[peer_id] += len(payload)
        queue.append(payload)
        # Bounded by count and by bytes: a peer that stops reading costs at most this.
        while len(queue) > self.limits.queue_payloads_max or (
            self._queued_bytes[peer_id] > self.limits.queue_bytes_max and len(queue) > 1
        ):
            self._queued_bytes[peer_id] -= len(queue.popleft())
            self.counters["send_dropped_queue_full"] += 1
            self._log.warning(peer_id, "queue full", "peer=%s send queue full: its oldest "
                              "payload was dropped", peer_id)  # fmt: skip
        self._wakeups[peer_id].set()

    def broadcast(self, payload: bytes) -> None:
        for peer_id in self._peers:
            self.send(peer_id, payload)

    def connected_peers(self) -> list[str]:
        """Peers with a live link in both directions."""
        return sorted(p for p in self._outbound if p in self._inbound)

    def disconnect(self, peer_id: str, reason: str) -> None:
        """Close every link with `peer_id` and refuse it, inbound and outbound, for a
        hold-off: it sent what no honest peer sends. Never blocks."""
        if self._key_of(peer_id) is None:
            return
        holdoff_ms = self._holdoff_ms_next.get(peer_id, self.limits.holdoff_ms_min)
        self._holdoff_ms_next[peer_id] = min(2 * holdoff_ms, self.limits.holdoff_ms_max)
        self._held_off_until_ms[peer_id] = self._clock.now_ms() + holdoff_ms
        self.counters["peer_disconnected"] += 1
        self._log.warning(peer_id, "disconnect", "peer=%s disconnected, refused for %d ms: %s",
                          peer_id, holdoff_ms, reason)  # fmt: skip
        for ws in (self._inbound.get(peer_id), self._outbound_links.get(peer_id)):
            if ws is not None and not ws.closed:
                task = asyncio.create_task(ws.close(code=aiohttp.WSCloseCode.POLICY_VIOLATION))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    def held_off_ms(self, peer_id: str) -> int:
        """How much longer `peer_id` is refused after a `disconnect` (0: not refused)."""
        return max(0, self._held_off_until_ms.get(peer_id, 0) - self._clock.now_ms())

    def _next_frame(self, peer_id: str) -> bytes:
        queue = self._queues[peer_id]
        batch: list[bytes] = []
        size = 16 + TAG_SIZE  # the batch's own header, and the seal
        while queue and size + len(queue[0]) + 8 <= self.limits.frame_bytes_max:
            payload = queue.popleft()
            batch.append(payload)
            size += len(payload) + 8
        if not batch and queue:
            # A payload that cannot fit any frame would block the queue forever.
            dropped = queue.popleft()
            self._queued_bytes[peer_id] -= len(dropped)
            self.counters["send_dropped_oversized"] += 1
            self._log.warning(peer_id, "oversized", "peer=%s a payload of %d bytes fits no "
                              "frame (%d bytes): dropped", peer_id, len(dropped),
                              self.limits.frame_bytes_max)  # fmt: skip
        self._queued_bytes[peer_id] -= sum(len(p) for p in batch)
        assert self._queued_bytes[peer_id] >= 0
        return _pack(batch) if batch else b""

    async def _dial_forever(self, peer_id: str) -> None:
        backoff_ms = self.limits.backoff_ms_min
        redial = self._redials[peer_id]
        # Until stop(), not merely until cancelled: a cancellation that a library call
        # swallows inside a dial must not keep this loop, and stop() awaiting it, alive.
        while self._started:
            holdoff_ms = self.held_off_ms(peer_id)
            if holdoff_ms > 0:
                await asyncio.sleep(holdoff_ms / 1000)
                continue
            redial.clear()
            try:
                if await self._dial_once(peer_id):
                    backoff_ms = self.limits.backoff_ms_min  # only after a real link
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.counters["dial_failed"] += 1
                log.debug("peer=%s dial failed: %s", peer_id, exc)
            except Exception:
                # A bug here must not silently end all sending to this peer.
                self.counters["dial_error"] += 1
                log.exception("peer=%s link failed unexpectedly; redialling", peer_id)
            finally:
                self._outbound.discard(peer_id)
            jitter = random.uniform(0.5, 1.0)  # desynchronise reconnect storms
            # Cut short when the peer dials us (it is up): once per link it opens.
            await wait_event(redial, backoff_ms * jitter / 1000)
            backoff_ms = min(backoff_ms * 2, self.limits.backoff_ms_max)

    async def _dial_once(self, peer_id: str) -> bool:
        """One link to `peer_id`, until it breaks. True if the handshake succeeded."""
        assert self._session is not None
        url = self._peers[peer_id].url.rstrip("/") + PEER_PATH
        async with self._session.ws_connect(
            url,
            max_msg_size=self.limits.frame_bytes_max,
            heartbeat=10.0,
            timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
        ) as ws:
            timeout_s = self.limits.handshake_timeout_ms / 1000
            peer_key = self._key_of(peer_id)
            if peer_key is None:  # not admitted on this node's ledger (yet)
                self.counters["dial_unknown_peer"] += 1
                return False
            try:
                async with asyncio.timeout(timeout_s):
                    channel = await dial_handshake(
                        ws,
                        chain_id=self.chain_id,
                        self_id=self.self_id,
                        signing_key=self._key,
                        peer_id=peer_id,
                        peer_key=peer_key,
                    )
            except ChannelError as exc:
                self.counters["handshake_failed"] += 1
                self._log.warning(peer_id, "handshake", "peer=%s refused: %s", peer_id, exc)
                return False
            self._outbound.add(peer_id)
            self._outbound_links[peer_id] = ws
            log.info("peer=%s link up (outbound)", peer_id)
            # The listener never sends data, but its close and pong frames must be read
            # for the link to notice that it is gone.
            reader = asyncio.create_task(self._read_until_closed(ws))
            try:
                await self._send_loop(ws, peer_id, channel, reader)
            finally:
                reader.cancel()
                del self._outbound_links[peer_id]
        return True

    async def _read_until_closed(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for _ in ws:
            self.counters["unexpected_reply"] += 1

    async def _send_loop(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        peer_id: str,
        channel: Channel,
        reader: asyncio.Task[None],
    ) -> None:
        wakeup = self._wakeups[peer_id]
        while not ws.closed and not reader.done():
            frame = self._next_frame(peer_id)
            if frame:
                await ws.send_bytes(channel.send.seal(frame))
                self.counters["frames_sent"] += 1
                continue
            wakeup.clear()
            if self._queues[peer_id]:
                continue
            waiter = asyncio.create_task(wakeup.wait())
            await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()

    # -- receiving ---------------------------------------------------------------------

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        address = normalized_address(request.remote)
        if not await self._address_allowed(address):
            self.counters["address_refused"] += 1
            self._log.warning(address, "address", "peer connection from %s refused: not an "
                              "address genesis names", address)  # fmt: skip
            return web.Response(status=403)
        slot = self._take_handshake_slot(address)
        if slot is None:
            self.counters["handshake_busy"] += 1
            self._log.warning(address, "busy", "peer connection from %s refused: %d of its "
                              "connections are in their handshake", address,
                              self.limits.handshakes_per_address_max)  # fmt: skip
            return web.Response(status=503)
        ws = web.WebSocketResponse(
            max_msg_size=self.limits.frame_bytes_max,
            heartbeat=10.0,
            timeout=CLOSE_TIMEOUT_S,
            compress=False,
        )
        try:
            await ws.prepare(request)
            linked = await self._handshake_in_slot(ws, slot)
        except ConnectionError:
            # It left before its upgrade was answered. Anyone can, for the price of a
            # connection, so it is counted, not logged (raised from here, aiohttp logs a
            # traceback of 1.7 KB for each); the answer below goes nowhere.
            self.counters["handshake_aborted"] += 1
            return web.Response(status=400)
        finally:
            self._release_handshake_slot(slot)
        if linked is None:
            await ws.close(code=aiohttp.WSCloseCode.POLICY_VIOLATION)
            return ws
        peer_id, channel = linked
        previous = self._inbound.get(peer_id)
        self._inbound[peer_id] = ws
        redial = self._redials.get(peer_id)
        if redial is not None and peer_id not in self._outbound:
            redial.set()
        if previous is not None:
            self._on_peer_down(peer_id)  # before the new link delivers anything
            await previous.close()
        log.info("peer=%s link up (inbound)", peer_id)
        try:
            await self._receive_loop(ws, peer_id, channel)
        finally:
            if self._inbound.get(peer_id) is ws:
                del self._inbound[peer_id]
                self._on_peer_down(peer_id)
        await ws.close()
        return ws

    async def _address_allowed(self, address: str) -> bool:
        if self._allowed_hosts is None or address in self._allowed_addresses:
            return True
        now_ms = self._clock.now_ms()
        if self._resolved_at_ms is not None and now_ms - self._resolved_at_ms < RESOLVE_INTERVAL_MS:
            return False
        # A name in genesis may have moved (a container restarted): look again, but at
        # most once per interval, however many strangers knock.
        self._resolved_at_ms = now_ms
        self._allowed_addresses = await self._resolve(self._allowed_hosts)
        return address in self._allowed_addresses

    async def _resolve(self, hosts: frozenset[str]) -> frozenset[str]:
        """The addresses of `hosts`, looked up at once, within RESOLVE_TIMEOUT_S in all."""
        found = await asyncio.gather(*(self._resolve_one(host) for host in sorted(hosts)))
        return frozenset(address for addresses in found for address in addresses)

    async def _resolve_one(self, host: str) -> list[str]:
        try:
            return [normalized_address(str(ipaddress.ip_address(host)))]  # an IP address
        except ValueError:
            pass
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, None, type=socket.SOCK_STREAM
                )
        except (OSError, TimeoutError) as exc:
            self.counters["resolve_failed"] += 1
            self._log.warning(host, "resolve", "allowed peer host %r does not resolve: %s",
                              host, exc)  # fmt: skip
            return []
        return [normalized_address(str(info[4][0])) for info in infos]

    def _take_handshake_slot(self, address: str) -> _Handshake | None:
        """A handshake slot for a new connection from `address`, or None if that address
        holds its share. A full table makes room by evicting the oldest handshake of the
        address that holds the most slots: a flood only ever displaces itself."""
        held = self._handshakes.get(address)
        if held is not None and len(held) >= self.limits.handshakes_per_address_max:
            return None
        if self._handshake_count >= self.limits.handshakes_max:
            busiest = max(self._handshakes.values(), key=len)
            assert busiest  # the count is positive, so some address holds a slot
            self._release_handshake_slot(busiest[0]).evicted.set()
            self.counters["handshake_evicted"] += 1
        slot = _Handshake(address=address)
        # Looked up again: the eviction may have emptied (and removed) this address's queue.
        self._handshakes.setdefault(address, collections.deque()).append(slot)
        self._handshake_count += 1
        assert self._handshake_count <= self.limits.handshakes_max
        return slot

    def _release_handshake_slot(self, slot: _Handshake) -> _Handshake:
        queue = self._handshakes.get(slot.address)
        if queue is not None and slot in queue:
            queue.remove(slot)
            self._handshake_count -= 1
            if not queue:
                del self._handshakes[slot.address]
        assert self._handshake_count >= 0
        return slot

    async def _handshake_in_slot(
        self, ws: web.WebSocketResponse, slot: _Handshake
    ) -> tuple[str, Channel] | None:
        """The listener's handshake, until it ends, times out or its slot is evicted."""
        handshake = asyncio.create_task(self._listener_handshake(ws, slot.address))
        evicted = asyncio.create_task(slot.evicted.wait())
        try:
            done, _ = await asyncio.wait(
                {handshake, evicted},
                timeout=self.limits.handshake_timeout_ms / 1000,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            handshake.cancel()
            evicted.cancel()
            await asyncio.gather(handshake, evicted, return_exceptions=True)
        if handshake not in done:
            if evicted not in done:
                self.counters["handshake_timeout"] += 1
            return None
        if handshake.cancelled() or handshake.exception() is not None:
            self.counters["handshake_error"] += 1
            return None
        return handshake.result()

    async def _listener_handshake(
        self, ws: web.WebSocketResponse, remote: str
    ) -> tuple[str, Channel] | None:
        try:
            hello = decode_hello((await ws.receive()).data)
        except ChannelError as exc:
            self.counters["handshake_malformed"] += 1
            self._log.warning(remote, "handshake", "peer from %s refused: %s", remote, exc)
            return None
        peer_id = hello.dialer_id
        dialer_key = self._key_of(peer_id) if peer_id != self.self_id else None
        if hello.chain_id != self.chain_id or hello.listener_id != self.self_id or not dialer_key:
            self.counters["handshake_refused"] += 1
            self._log.warning(remote, "handshake", "peer from %s refused: unknown id %r or "
                              "wrong chain/target", remote, peer_id)  # fmt: skip
            return None
        if self.held_off_ms(peer_id) > 0:
            self.counters["handshake_held_off"] += 1
            return None
        handshake = ListenerHandshake(
            hello,
            signing_key=self._key,
            dialer_key=dialer_key,
            ephemeral_secret=os.urandom(32),
        )
        try:
            await ws.send_bytes(handshake.reply())
            channel = handshake.on_proof((await ws.receive()).data)
        except ChannelError as exc:
            self.counters["handshake_bad_signature"] += 1
            self._log.warning(remote, "handshake", "peer=%s from %s refused: %s", peer_id,
                              remote, exc)  # fmt: skip
            return None
        return peer_id, channel

    async def _receive_loop(
        self, ws: web.WebSocketResponse, peer_id: str, channel: Channel
    ) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                self.counters["frame_not_binary"] += 1
                self._log.warning(peer_id, "frame", "peer=%s sent a non-binary frame; closing",
                                  peer_id)  # fmt: skip
                break
            try:
                frame = channel.receive.open(msg.data)
            except ChannelError as exc:
                # Altered, replayed, reordered or inserted: by the peer or by the path.
                self.counters["frame_unauthentic"] += 1
                self._log.warning(peer_id, "frame", "peer=%s link: %s; closing", peer_id, exc)
                break
            payloads = self._decode_frame(frame)
            if payloads is None:
                self.counters["frame_malformed"] += 1
                self._log.warning(peer_id, "frame", "peer=%s sent a malformed frame; closing",
                                  peer_id)  # fmt: skip
                break
            if not await self._deliver(peer_id, payloads):
                break  # the peer was disconnected for one of them: drop the rest
        if ws.exception() is not None:
            self.counters["link_error"] += 1
            self._log.warning(peer_id, "link", "peer=%s link closed with error: %s", peer_id,
                              ws.exception())  # fmt: skip

    async def _deliver(self, peer_id: str, payloads: list[bytes]) -> bool:
        """Hand one frame's payloads over in order; False once the peer is disconnected."""
        for payload in payloads:
            pending = self._on_payload(peer_id, payload)
            if pending is not None:
                await pending
            if self.held_off_ms(peer_id) > 0:
                return False
        return True

    def _decode_frame(self, data: bytes) -> list[bytes] | None:
        try:
            batch = msgpack.unpackb(
                data,
                raw=False,
                max_bin_len=self.limits.frame_bytes_max,
                max_str_len=0,
                max_array_len=self.limits.frame_bytes_max // 8,
                max_map_len=0,
                max_ext_len=0,
            )
        except (ValueError, TypeError, msgpack.UnpackException):
            return None
        if type(batch) is not list or not all(type(p) is bytes for p in batch):
            return None
        return batch


async def dial_handshake(
    ws: aiohttp.ClientWebSocketResponse,
    *,
    chain_id: str,
    self_id: str,
    signing_key: SigningKey,
    peer_id: str,
    peer_key: bytes,
) -> Channel:
    """The dialer's side of the handshake on a fresh WebSocket (node/channel.py).

    Returns:
        The link's channel; seal each frame with `channel.send`.
    Raises:
        ChannelError: the listener closed the link or failed the handshake.
    """
    handshake = DialerHandshake(
        chain_id=chain_id,
        dialer_id=self_id,
        listener_id=peer_id,
        signing_key=signing_key,
        listener_key=peer_key,
        ephemeral_secret=os.urandom(32),
    )
    await ws.send_bytes(handshake.hello())
    reply = await ws.receive()
    if reply.type != aiohttp.WSMsgType.BINARY:
        raise ChannelError(f"the listener answered {reply.type.name} {reply.extra or ''}")
    channel, proof = handshake.on_reply(reply.data)
    await ws.send_bytes(proof)
    return channel
