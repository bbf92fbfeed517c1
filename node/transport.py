"""Authenticated peer links over aiohttp WebSockets, with batched binary frames.

Theory of operation:
- Each node dials every configured peer and uses that outbound link only to send; what
  a peer sends arrives on the link the peer dialed (inbound). Two one-way links per pair
  avoid the race of deciding which of two simultaneous connections to keep.
- A link starts with a mutual challenge: the dialer names itself and the peer it expects
  and sends a fresh nonce; the listener answers with its own nonce and a signature over
  both; the dialer signs both in turn. Signed bytes carry a domain tag, the chain id and
  both ids, so a signature never serves another link, direction or network. Keys come
  from genesis: an unknown id or a wrong key closes the link.
- Sending never blocks the caller: each peer has a bounded queue, and a full queue drops
  its oldest payload (consensus re-broadcasts, gossip is best effort), so one slow peer
  never holds up the others. A sender task packs queued payloads into one frame, up to
  `frame_bytes_max`, so many small messages cost one syscall.
- Inbound frames larger than `frame_bytes_max` close the link (aiohttp enforces it);
  malformed frames are counted and close the link. Nothing from a peer raises past here.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp
import msgpack
from aiohttp import web
from nacl.signing import SigningKey

from consensus.crypto import verify_bytes

__all__ = ["PeerAddress", "PeerNetwork", "TransportLimits"]

log = logging.getLogger(__name__)

TAG_LISTENER = b"somnet/peer/listener/v1"
TAG_DIALER = b"somnet/peer/dialer/v1"
NONCE_SIZE = 32
HANDSHAKE_BYTES_MAX = 1024
PEER_PATH = "/peer"


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportLimits:
    frame_bytes_max: int = 4 * 1024 * 1024
    """Largest WebSocket frame accepted or sent; a larger inbound frame closes the link."""
    queue_payloads_max: int = 10_000
    """Payloads queued per peer before the oldest is dropped."""
    queue_bytes_max: int = 64 * 1024 * 1024
    """Bytes queued per peer before the oldest payloads are dropped."""
    handshake_timeout_ms: int = 5_000
    handshakes_max: int = 64
    """Unauthenticated connections in their handshake at once; more are closed."""
    backoff_ms_min: int = 100
    backoff_ms_max: int = 5_000


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerAddress:
    peer_id: str
    url: str
    """Base URL of the peer's listener, e.g. http://127.0.0.1:26656."""


FrameHandler = Callable[[str, bytes], None]


def _pack(obj: object) -> bytes:
    packed = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def _unpack_handshake(data: object, size: int) -> list[object] | None:
    if not isinstance(data, bytes) or len(data) > HANDSHAKE_BYTES_MAX:
        return None
    try:
        obj = msgpack.unpackb(data, raw=False, max_bin_len=256, max_str_len=256, max_array_len=8)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    if type(obj) is not list or len(obj) != size:
        return None
    return obj


class PeerNetwork:
    """The node's links to its peers: dial, authenticate, send batched, receive."""

    def __init__(
        self,
        *,
        chain_id: str,
        self_id: str,
        signing_key: SigningKey,
        known_keys: Mapping[str, bytes],
        peers: list[PeerAddress],
        on_payload: FrameHandler,
        limits: TransportLimits,
    ) -> None:
        assert self_id in known_keys
        assert all(p.peer_id in known_keys and p.peer_id != self_id for p in peers)
        self.chain_id = chain_id
        self.self_id = self_id
        self._key = signing_key
        self._known_keys = dict(known_keys)
        self._peers = {p.peer_id: p for p in peers}
        self._on_payload = on_payload
        self.limits = limits
        self._queues: dict[str, collections.deque[bytes]] = {
            p: collections.deque() for p in self._peers
        }
        self._queued_bytes: dict[str, int] = dict.fromkeys(self._peers, 0)
        self._wakeups: dict[str, asyncio.Event] = {p: asyncio.Event() for p in self._peers}
        self._outbound: set[str] = set()
        self._handshaking = 0
        self._inbound: dict[str, web.WebSocketResponse] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self.counters: collections.Counter[str] = collections.Counter()

    # -- lifecycle ---------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [web.get(PEER_PATH, self._accept)]

    async def start(self) -> None:
        assert self._session is None
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        for peer_id in self._peers:
            self._tasks.append(asyncio.create_task(self._dial_forever(peer_id)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for ws in list(self._inbound.values()):
            await ws.close()
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
        self._wakeups[peer_id].set()

    def broadcast(self, payload: bytes) -> None:
        for peer_id in self._peers:
            self.send(peer_id, payload)

    def disconnect(self, peer_id: str, reason: str) -> None:
        """Close the link a misbehaving peer dialed to us."""
        log.warning("peer=%s disconnected: %s", peer_id, reason)
        ws = self._inbound.get(peer_id)
        if ws is not None:
            self._tasks.append(asyncio.get_running_loop().create_task(self._close(ws)))

    @staticmethod
    async def _close(ws: web.WebSocketResponse) -> None:
        await ws.close()

    def connected_peers(self) -> list[str]:
        """Peers with a live link in both directions."""
        return sorted(p for p in self._outbound if p in self._inbound)

    def _next_frame(self, peer_id: str) -> bytes:
        queue = self._queues[peer_id]
        batch: list[bytes] = []
        size = 16
        while queue and size + len(queue[0]) + 8 <= self.limits.frame_bytes_max:
            payload = queue.popleft()
            batch.append(payload)
            size += len(payload) + 8
        if not batch and queue:
            # A payload that cannot fit any frame would block the queue forever.
            self._queued_bytes[peer_id] -= len(queue.popleft())
            self.counters["send_dropped_oversized"] += 1
        self._queued_bytes[peer_id] -= sum(len(p) for p in batch)
        assert self._queued_bytes[peer_id] >= 0
        return _pack(batch) if batch else b""

    async def _dial_forever(self, peer_id: str) -> None:
        backoff_ms = self.limits.backoff_ms_min
        while True:
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
            await asyncio.sleep(backoff_ms * jitter / 1000)
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
            async with asyncio.timeout(timeout_s):
                if not await self._dialer_handshake(ws, peer_id):
                    return False
            self._outbound.add(peer_id)
            log.info("peer=%s link up (outbound)", peer_id)
            # The listener never sends data, but its close and pong frames must be read
            # for the link to notice that it is gone.
            reader = asyncio.create_task(self._read_until_closed(ws))
            try:
                await self._send_loop(ws, peer_id, reader)
            finally:
                reader.cancel()
        return True

    async def _read_until_closed(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for _ in ws:
            self.counters["unexpected_reply"] += 1

    async def _send_loop(
        self, ws: aiohttp.ClientWebSocketResponse, peer_id: str, reader: asyncio.Task[None]
    ) -> None:
        wakeup = self._wakeups[peer_id]
        while not ws.closed and not reader.done():
            frame = self._next_frame(peer_id)
            if frame:
                await ws.send_bytes(frame)
                continue
            wakeup.clear()
            if self._queues[peer_id]:
                continue
            waiter = asyncio.create_task(wakeup.wait())
            await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()

    async def _dialer_handshake(self, ws: aiohttp.ClientWebSocketResponse, peer_id: str) -> bool:
        dialer_nonce = os.urandom(NONCE_SIZE)
        await ws.send_bytes(_pack([self.chain_id, self.self_id, peer_id, dialer_nonce]))
        reply = _unpack_handshake((await ws.receive()).data, 2)
        if reply is None or not isinstance(reply[0], bytes) or not isinstance(reply[1], bytes):
            self.counters["handshake_malformed"] += 1
            return False
        listener_nonce, signature = reply[0], reply[1]
        signed = _pack([TAG_LISTENER, self.chain_id, peer_id, self.self_id, dialer_nonce,
                        listener_nonce])  # fmt: skip
        if not verify_bytes(self._known_keys[peer_id], signed, signature):
            self.counters["handshake_bad_signature"] += 1
            log.warning("peer=%s refused: listener signature does not verify", peer_id)
            return False
        mine = _pack([TAG_DIALER, self.chain_id, self.self_id, peer_id, listener_nonce,
                      dialer_nonce])  # fmt: skip
        await ws.send_bytes(_pack([self._key.sign(mine).signature]))
        return True

    # -- receiving ---------------------------------------------------------------------

    async def _accept(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=self.limits.frame_bytes_max, heartbeat=10.0)
        await ws.prepare(request)
        peer_id: str | None = None
        if self._handshaking >= self.limits.handshakes_max:
            # Unauthenticated connections cost a socket each: bound them.
            self.counters["handshake_busy"] += 1
        else:
            self._handshaking += 1
            try:
                async with asyncio.timeout(self.limits.handshake_timeout_ms / 1000):
                    peer_id = await self._listener_handshake(ws, request.remote)
            except TimeoutError:
                self.counters["handshake_timeout"] += 1
            finally:
                self._handshaking -= 1
        if peer_id is None:
            await ws.close(code=aiohttp.WSCloseCode.POLICY_VIOLATION)
            return ws
        previous = self._inbound.get(peer_id)
        if previous is not None:
            await previous.close()
        self._inbound[peer_id] = ws
        log.info("peer=%s link up (inbound)", peer_id)
        try:
            await self._receive_loop(ws, peer_id)
        finally:
            if self._inbound.get(peer_id) is ws:
                del self._inbound[peer_id]
        return ws

    async def _listener_handshake(
        self, ws: web.WebSocketResponse, remote: str | None
    ) -> str | None:
        hello = _unpack_handshake((await ws.receive()).data, 4)
        if hello is None:
            self.counters["handshake_malformed"] += 1
            return None
        chain_id, peer_id, expected_id, dialer_nonce = hello
        known = isinstance(peer_id, str) and peer_id in self._known_keys
        if chain_id != self.chain_id or expected_id != self.self_id or not known:
            self.counters["handshake_refused"] += 1
            log.warning("peer from %s refused: unknown id %r or wrong chain/target", remote,
                        peer_id)  # fmt: skip
            return None
        assert isinstance(peer_id, str)
        if not isinstance(dialer_nonce, bytes) or len(dialer_nonce) != NONCE_SIZE:
            self.counters["handshake_malformed"] += 1
            return None
        listener_nonce = os.urandom(NONCE_SIZE)
        mine = _pack([TAG_LISTENER, self.chain_id, self.self_id, peer_id, dialer_nonce,
                      listener_nonce])  # fmt: skip
        await ws.send_bytes(_pack([listener_nonce, self._key.sign(mine).signature]))
        reply = _unpack_handshake((await ws.receive()).data, 1)
        signed = _pack([TAG_DIALER, self.chain_id, peer_id, self.self_id, listener_nonce,
                        dialer_nonce])  # fmt: skip
        if reply is None or not isinstance(reply[0], bytes):
            self.counters["handshake_malformed"] += 1
            return None
        if not verify_bytes(self._known_keys[peer_id], signed, reply[0]):
            self.counters["handshake_bad_signature"] += 1
            log.warning("peer=%s from %s refused: signature does not verify", peer_id, remote)
            return None
        return peer_id

    async def _receive_loop(self, ws: web.WebSocketResponse, peer_id: str) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                self.counters["frame_not_binary"] += 1
                log.warning("peer=%s sent a non-binary frame; closing", peer_id)
                break
            payloads = self._decode_frame(msg.data)
            if payloads is None:
                self.counters["frame_malformed"] += 1
                log.warning("peer=%s sent a malformed frame; closing", peer_id)
                break
            for payload in payloads:
                self._on_payload(peer_id, payload)
        if ws.exception() is not None:
            self.counters["link_error"] += 1
            log.warning("peer=%s link closed with error: %s", peer_id, ws.exception())

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
