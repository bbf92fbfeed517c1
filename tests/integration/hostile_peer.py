"""A hostile participant for tests (issue 8): it joins a real network with a genesis
participant's real key, in place of that participant's node, and misbehaves on demand.

Theory of operation:
- The participant's own node is not started; the tool takes its place. It listens on the
  participant's genesis peer address (a PeerNetwork that only listens), so the honest
  nodes dial it and send it what they send that participant: STATUS with certificates,
  answers to its sync requests and, for a validator, consensus messages. It dials the
  honest nodes it attacks itself, with a genuine handshake (PeerClient), and a reader per
  link notices when a node closes it.
- One method per behaviour, each doing what its finding describes and returning what a
  test needs to judge the honest nodes' answer: the links it used (closed or not), what
  it sent, what it received. The tool asserts nothing about the nodes.
- Everything it keeps is bounded (RECEIVED_MAX records, CONSENSUS_KEPT_MAX messages), and
  every wait has a deadline and says what it waited for.

The behaviours, by finding of issue 8: 1 `oversized_block_txs`, 2 `status_lie`, 3
`status_flood`, 4 `mempool_flood`, 5 `handshake_flood` and `aborted_upgrades`, 6
`malformed` and `badly_signed_txs`, 8 `sync_amplification`, 11 `equivocate`; and
`garbage`, `replay`, `oversize`. `barrier` waits until a node has handled everything
the tool sent it, and `request_blocks` fetches blocks as a node would. Findings 7 (an
on-path relay), 9 (API connection floods) and 10 (nested JSON) are covered by
test_peer_attacks.py and test_api_hostile.py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import socket
import struct
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgpack
from aiohttp import web
from nacl.signing import SigningKey

from consensus.crypto import Signer
from consensus.messages import Height, Round, ValidatorId, Vote, VoteType
from consensus.wire import decode_certificate, encode_message
from node.channel import TAG_SIZE
from node.config import load_config
from node.genesis import load_genesis
from node.intake import GOSSIP_TXS_MAX
from node.keys import load_key_file
from node.protocol import (
    HEIGHT_MAX,
    SYNC_BLOCKS_MAX,
    Consensus,
    Payload,
    ProtocolError,
    Status,
    SyncBlocks,
    SyncRequest,
    Txs,
    decode_payload,
    encode_payload,
)
from node.transport import PEER_PATH, PeerNetwork, TransportLimits
from node.tx import PAYOUT_LEGS_MAX, sign_payout, sign_transfer
from tests.integration.peer_client import HandshakeRefused, PeerClient
from tests.integration.waiting import POLL_INTERVAL_S, timed_out, wait_for_async

__all__ = ["HostilePeer", "KeylessFlood", "Link", "SyncServed", "abort_upgrades"]

RECEIVED_MAX = 100_000
"""Records of received payloads kept (time, sender, kind, sizes); older ones are dropped."""
CONSENSUS_KEPT_MAX = 10_000
"""Consensus messages kept for `replay`; older ones are dropped."""
CONNECT_TIMEOUT_S = 30.0
"""How long `connect` retries a refused handshake: longer than a first hold-off (5 s)."""
FRAME_OVERHEAD_BYTES = 64
"""A frame's batch header, seal and payload headers, with room to spare."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Received:
    """One payload an honest node sent the tool: its kind and sizes, not its contents."""

    at_s: float  # time.monotonic() on arrival
    peer_id: str
    kind: type[Payload]
    size_bytes: int
    blocks_bytes: int  # of a SyncBlocks: its block and certificate bytes; else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncServed:
    """What `sync_amplification` asked for and got within its window."""

    requests_count: int
    answer_bytes_probe: int  # block and certificate bytes of one unthrottled answer
    bytes_count: int  # block and certificate bytes received within the window
    seconds: float

    @property
    def bytes_per_s(self) -> float:
        return self.bytes_count / self.seconds

    @property
    def demand_bytes(self) -> int:
        """What the requests would have cost the node without its budget."""
        return self.requests_count * self.answer_bytes_probe


class Link:
    """One authenticated link the tool dialed to an honest node. A reader task consumes
    what the node sends on it (only close and ping frames), so a close is noticed."""

    def __init__(self, target: str, client: PeerClient) -> None:
        self.target = target
        self.client = client
        self.closed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                message = await self.client.ws.receive()
                if message.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.ERROR,
                ):
                    return
        finally:
            self.closed.set()

    async def send_payloads(self, payloads: Sequence[bytes]) -> bool:
        """One sealed frame of `payloads`; False if the link is already closed."""
        return await self.send_frame(msgpack.packb(list(payloads), use_bin_type=True))

    async def send_frame(self, frame: bytes) -> bool:
        """`frame` sealed as a node seals it; False if the link is already closed."""
        if self.closed.is_set():
            return False
        return await self.send_raw(self.client.channel.send.seal(frame))

    async def send_raw(self, data: bytes) -> bool:
        """`data` as a WebSocket message, unsealed; False if the link is already closed."""
        if self.closed.is_set():
            return False
        try:
            await self.client.ws.send_bytes(data)
        except (ConnectionError, aiohttp.ClientError):
            return False
        return True

    async def closed_within(self, timeout_s: float) -> bool:
        """True if the node closes the link within `timeout_s`."""
        try:
            await asyncio.wait_for(self.closed.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self.client.close()


class KeylessFlood:
    """Keeps `count` idle, never-authenticating WebSockets open to a peer port, spread over
    `addresses` loopback source addresses (127.0.0.2, ...), reopening each as soon as the
    node closes it (issue 8 finding 5)."""

    def __init__(self, url: str, count: int, addresses: int) -> None:
        assert count >= 1
        assert 1 <= addresses <= 200
        self.url = url
        self.count = count
        self._sessions = [
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(local_addr=(f"127.0.0.{2 + i}", 0), limit=0)
            )
            for i in range(addresses)
        ]
        self.open_count = 0
        self.opened_count = 0
        self.refused_count = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> KeylessFlood:
        self._tasks = [
            asyncio.create_task(self._hold(self._sessions[i % len(self._sessions)]))
            for i in range(self.count)
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for session in self._sessions:
            await session.close()

    async def _hold(self, session: aiohttp.ClientSession) -> None:
        while True:
            try:
                async with session.ws_connect(self.url + PEER_PATH, autoping=False) as ws:
                    self.open_count += 1
                    self.opened_count += 1
                    try:
                        await ws.receive()  # the node closes it, or it waits for ever
                    finally:
                        self.open_count -= 1
            except (aiohttp.ClientError, OSError):
                self.refused_count += 1
            await asyncio.sleep(0.01)  # a flood, not a busy loop on the test's own core


@dataclass(slots=True)
class _SyncWaiter:
    peer_id: str
    blocks: list[tuple[bytes, bytes]] = field(default_factory=list)
    answered: asyncio.Event = field(default_factory=asyncio.Event)


class HostilePeer:
    """A genesis participant played by the test: its key, its peer address, no node.

    Use as `async with HostilePeer(home, environ) as tool:`, where `home` is the
    participant's node home (node.toml, its key file, genesis) and `environ` the SOMNET_*
    overrides the network's nodes run with (the frame limit, for one).
    """

    def __init__(self, home: Path, environ: Mapping[str, str]) -> None:
        config = load_config(home, dict(environ))
        genesis = load_genesis(config.genesis_file)
        self.genesis = genesis
        self.peer_id = config.node_id
        self.chain_id = genesis.chain_id
        self.frame_bytes_max = config.frame_bytes_max
        self.block_bytes_max = config.block_bytes_max
        self.sync_bytes_max = config.sync_bytes_max
        self._key: SigningKey = load_key_file(config.key_file)
        self._listen = config.peer_listen
        self._keys = {p.participant_id: p.public_key for p in genesis.participants}
        self._urls = {p.participant_id: f"http://{p.peer_address}" for p in genesis.participants}
        self.accounts = [a.account_id for a in genesis.accounts if a.owner != self.peer_id]
        self.received: collections.deque[Received] = collections.deque(maxlen=RECEIVED_MAX)
        self.received_bytes: collections.Counter[str] = collections.Counter()  # by sender
        self.consensus: collections.deque[bytes] = collections.deque(maxlen=CONSENSUS_KEPT_MAX)
        self.status: Status | None = None  # the highest certified STATUS heard
        self.links: dict[str, Link] = {}  # the tool's current link to each target
        self._sync_waiter: _SyncWaiter | None = None
        self._listener: PeerNetwork | None = None
        self._runner: web.AppRunner | None = None

    # -- the participant's place: its listener ------------------------------------------

    async def __aenter__(self) -> HostilePeer:
        self._listener = PeerNetwork(
            chain_id=self.chain_id,
            self_id=self.peer_id,
            signing_key=self._key,
            known_keys=self._keys,
            peers=[],
            on_payload=self._on_payload,
            limits=TransportLimits(frame_bytes_max=self.frame_bytes_max),
        )
        app = web.Application()
        app.router.add_routes(self._listener.routes())
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        host, _, port = self._listen.rpartition(":")
        await web.TCPSite(self._runner, host, int(port), reuse_address=True).start()
        await self._listener.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for link in self.links.values():
            await link.close()
        if self._listener is not None:
            await self._listener.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    def _on_payload(self, peer_id: str, data: bytes) -> None:
        try:
            payload = decode_payload(data)
        except ProtocolError:
            return  # an honest node sends none; nothing to learn from one
        blocks_bytes = 0
        if isinstance(payload, SyncBlocks):
            blocks_bytes = sum(len(block) + len(cert) for block, cert in payload.blocks)
        record = Received(at_s=time.monotonic(), peer_id=peer_id, kind=type(payload),
                          size_bytes=len(data), blocks_bytes=blocks_bytes)  # fmt: skip
        self.received.append(record)
        self.received_bytes[peer_id] += len(data)
        match payload:
            case Status():
                if payload.certificate and (
                    self.status is None or payload.height > self.status.height
                ):
                    self.status = payload
            case Consensus():
                self.consensus.append(payload.message)
            case SyncBlocks():
                waiter = self._sync_waiter
                if waiter is not None and waiter.peer_id == peer_id:
                    waiter.blocks.extend(payload.blocks)
                    waiter.answered.set()
            case _:
                pass

    def heard_from(self, peer_id: str) -> bool:
        """Whether `peer_id` has linked to the listener and sent anything yet."""
        return self.received_bytes[peer_id] > 0

    async def wait_heard_from(self, peer_id: str, timeout_s: float = 30.0) -> None:
        """Until `peer_id`'s node dials the listener (it redials with a back-off of up to
        5 s) and sends something: what it sends this participant now reaches the tool."""
        await wait_for_async(
            lambda: self.heard_from(peer_id), timeout_s, f"{peer_id} to dial the tool"
        )

    # -- links to the honest nodes --------------------------------------------------------

    async def link(self, target: str) -> Link:
        """The tool's open link to `target`, or a new one. A node keeps one inbound link
        per peer: a new link from the tool makes it close the one before."""
        current = self.links.get(target)
        if current is not None and not current.closed.is_set():
            return current
        return await self.connect(target)

    async def connect(self, target: str, timeout_s: float = CONNECT_TIMEOUT_S) -> Link:
        """A new authenticated link to `target`, retried while the node refuses the
        handshake (it holds the tool off for a while after each disconnect)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return await self.connect_once(target)
            except HandshakeRefused as exc:
                if time.monotonic() >= deadline:
                    raise timed_out(timeout_s, f"{target} to accept {self.peer_id}", exc) from exc
            await asyncio.sleep(POLL_INTERVAL_S)

    async def connect_once(self, target: str) -> Link:
        """One handshake with `target`, replacing the tool's link to it.

        Raises:
            HandshakeRefused: the node refused it (a hold-off, a full handshake table).
        """
        previous = self.links.pop(target, None)
        if previous is not None:
            await previous.close()
        client = await PeerClient.connect(
            self._urls[target],
            chain_id=self.chain_id,
            as_id=self.peer_id,
            signing_key=self._key,
            target_id=target,
            target_key=self._keys[target],
        )
        link = self.links[target] = Link(target, client)
        return link

    async def send_txs(self, link: Link, txs: Sequence[bytes]) -> bool:
        """Gossip `txs` in as few frames as the frame limit allows (one payload a frame)."""
        budget = self.frame_bytes_max - TAG_SIZE - FRAME_OVERHEAD_BYTES
        batch: list[bytes] = []
        size = 0
        for tx in txs:
            if batch and (size + len(tx) + 8 > budget or len(batch) == GOSSIP_TXS_MAX):
                if not await link.send_payloads([encode_payload(Txs(txs=tuple(batch)))]):
                    return False
                batch, size = [], 0
            batch.append(tx)
            size += len(tx) + 8
        return not batch or await link.send_payloads([encode_payload(Txs(txs=tuple(batch)))])

    async def barrier(self, target: str, timeout_s: float = 30.0) -> None:
        """Until `target` has handled everything the tool sent on its link: a node takes
        one link's payloads in order (a gossip batch is checked before the next payload
        is read, the rest queue for its driver in order), so its answer to a sync request
        sent last comes after all of them."""
        await self.wait_heard_from(target)
        link = await self.link(target)
        waiter = self._sync_waiter = _SyncWaiter(peer_id=target)
        request = encode_payload(SyncRequest(first_height=1, count=1))
        assert await link.send_payloads([request]), f"{target} closed the link"
        what = f"{target} to answer after everything the tool sent"
        await wait_for_async(waiter.answered.is_set, timeout_s, what)
        self._sync_waiter = None

    # -- signed material ------------------------------------------------------------------

    def transfer(self, *, expiry_height: int, amount: int = 1) -> bytes:
        """A valid transfer from the tool's account, signed with its key (no remittance)."""
        return sign_transfer(self._key, self.chain_id, signer=self.peer_id,
                             uetr=uuid.uuid4().bytes, expiry_height=expiry_height,
                             from_account=self.peer_id, to_account=self.accounts[0],
                             amount=amount)  # fmt: skip

    def payout(self, *, expiry_height: int, legs_count: int = PAYOUT_LEGS_MAX) -> bytes:
        """A valid payout of `legs_count` legs of 1 tyiyn to the other accounts in turn:
        about 9 bytes a leg, so the largest is about 9 KB."""
        legs = [(self.accounts[i % len(self.accounts)], 1) for i in range(legs_count)]
        return sign_payout(self._key, self.chain_id, signer=self.peer_id,
                           uetr=uuid.uuid4().bytes, expiry_height=expiry_height,
                           from_account=self.peer_id, legs=legs)  # fmt: skip

    # -- finding 1 ------------------------------------------------------------------------

    async def oversized_block_txs(
        self, targets: Sequence[str], *, expiry_height: int, blocks_count: int, fillers_count: int
    ) -> list[bytes]:
        """Payouts of PAYOUT_LEGS_MAX legs that add up to `blocks_count` times the block
        limit, then `fillers_count` small transfers that fill each block to its last
        bytes; all valid, signed with the tool's key, gossiped to every target.

        Returns:
            The transactions, in the order sent.
        """
        first = self.payout(expiry_height=expiry_height)
        payouts_count = blocks_count * self.block_bytes_max // len(first) + 1
        txs = [first] + [self.payout(expiry_height=expiry_height) for _ in range(payouts_count - 1)]
        txs += [self.transfer(expiry_height=expiry_height) for _ in range(fillers_count)]
        for target in targets:
            link = await self.link(target)
            sent = await self.send_txs(link, txs)
            assert sent, f"{target} closed the link while the tool gossiped valid transactions"
        return txs

    async def request_blocks(
        self, target: str, first_height: int, count: int, timeout_s: float = 30.0
    ) -> list[tuple[bytes, bytes]]:
        """Blocks first_height.. (count of them) with their certificates, from `target`
        (it answers on its own link to the listener), asked again until all came."""
        assert 1 <= count
        await self.wait_heard_from(target)
        link = await self.link(target)
        blocks: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + timeout_s
        while len(blocks) < count:
            waiter = self._sync_waiter = _SyncWaiter(peer_id=target)
            wanted = min(count - len(blocks), SYNC_BLOCKS_MAX)
            request = SyncRequest(first_height=first_height + len(blocks), count=wanted)
            assert await link.send_payloads([encode_payload(request)]), f"{target} closed"
            try:
                await asyncio.wait_for(
                    waiter.answered.wait(), max(0.1, deadline - time.monotonic())
                )
            except TimeoutError:
                raise timed_out(timeout_s, f"blocks from {first_height} from {target}",
                                f"{len(blocks)} of {count}") from None  # fmt: skip
            blocks += waiter.blocks
            if not waiter.blocks and time.monotonic() >= deadline:
                raise timed_out(timeout_s, f"block {first_height + len(blocks)} from {target}",
                                "empty answers (its sync budget or size limit)")  # fmt: skip
        self._sync_waiter = None
        return blocks[:count]

    # -- findings 2 and 3 -----------------------------------------------------------------

    async def status_lie(self, target: str, *, certificate: bytes = b"") -> Link:
        """STATUS claiming height 2**63-1, with `certificate` (none, or a real one of a
        lower height). Returns the link it went on."""
        link = await self.link(target)
        status = Status(height=HEIGHT_MAX, certificate=certificate)
        assert await link.send_payloads([encode_payload(status)]), f"{target} closed the link"
        return link

    async def status_flood(
        self, target: str, *, payloads_per_frame: int = 500, frames_max: int = 100
    ) -> tuple[Link, int]:
        """STATUS payloads as fast as the link takes them, until the node closes it or
        `frames_max` frames went. Each is a true claim (height 0): only the rate is hostile.

        Returns:
            The link and how many payloads were sent before it closed.
        """
        link = await self.link(target)
        frame = [encode_payload(Status(height=0, certificate=b""))] * payloads_per_frame
        sent_count = 0
        for _ in range(frames_max):
            if not await link.send_payloads(frame):
                break
            sent_count += payloads_per_frame
        return link, sent_count

    # -- finding 4 ------------------------------------------------------------------------

    async def mempool_flood(
        self, targets: Sequence[str], *, count: int, expiry_height: int, too_far_count: int = 3
    ) -> tuple[list[bytes], list[bytes]]:
        """`count` valid transfers signed by the tool, each expiring at `expiry_height`
        (the latest a node admits), and `too_far_count` expiring at 2**63-1, which no
        node may admit; gossiped to every target as fast as the links take them.

        Returns:
            (the admissible transfers, those expiring at 2**63-1).
        """
        admissible = [self.transfer(expiry_height=expiry_height) for _ in range(count)]
        too_far = [self.transfer(expiry_height=HEIGHT_MAX) for _ in range(too_far_count)]
        for target in targets:
            link = await self.link(target)
            assert await self.send_txs(link, too_far + admissible), f"{target} closed the link"
        return admissible, too_far

    # -- finding 5 ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def handshake_flood(
        self, target: str, *, count: int, addresses: int
    ) -> AsyncIterator[KeylessFlood]:
        """Keyless idle WebSockets to `target`'s peer port while the block runs."""
        async with KeylessFlood(self._urls[target], count, addresses) as flood:
            yield flood

    async def aborted_upgrades(self, target: str, *, count: int, addresses: int) -> None:
        """`abort_upgrades` against `target`'s peer port."""
        await abort_upgrades(self._urls[target], count=count, addresses=addresses)

    # -- finding 6 ------------------------------------------------------------------------

    async def malformed(self, target: str, *, payloads_count: int) -> Link:
        """One frame of `payloads_count` payloads that do not decode (a reserved msgpack
        byte first). Returns the link it went on."""
        link = await self.link(target)
        junk = [b"\xc1" + i.to_bytes(4, "big") * 24 for i in range(payloads_count)]
        assert await link.send_payloads(junk), f"{target} closed the link"
        return link

    async def badly_signed_txs(self, target: str, *, expiry_height: int, count: int) -> Link:
        """One frame of `count` transfers whose signatures do not verify."""
        link = await self.link(target)
        txs = []
        for _ in range(count):
            tx = self.transfer(expiry_height=expiry_height)
            txs.append(bytes([tx[0] ^ 1]) + tx[1:])
        assert await self.send_txs(link, txs), f"{target} closed the link"
        return link

    # -- finding 8 ------------------------------------------------------------------------

    async def sync_amplification(
        self, target: str, *, duration_s: float, requests_per_s: int
    ) -> SyncServed:
        """Requests for SYNC_BLOCKS_MAX blocks from height 1, `requests_per_s` of them for
        `duration_s`; counts the block and certificate bytes `target` sends back within
        that window (its answers travel on its own link to the listener)."""
        assert requests_per_s >= 10
        await self.wait_heard_from(target)
        link = await self.link(target)
        request = encode_payload(SyncRequest(first_height=1, count=SYNC_BLOCKS_MAX))
        per_tick = requests_per_s // 10  # ten frames a second
        probe_bytes = await self._probe_answer_bytes(target, link, request)
        assert probe_bytes > 0
        start_s = time.monotonic()
        requests_count = 0
        for tick in range(int(duration_s * 10)):
            assert await link.send_payloads([request] * per_tick), f"{target} closed the link"
            requests_count += per_tick
            await asyncio.sleep(max(0.0, start_s + (tick + 1) / 10 - time.monotonic()))
        end_s = time.monotonic()
        served = sum(
            r.blocks_bytes
            for r in self.received
            if r.peer_id == target and start_s <= r.at_s <= end_s
        )
        return SyncServed(requests_count=requests_count, answer_bytes_probe=probe_bytes,
                          bytes_count=served, seconds=end_s - start_s)  # fmt: skip

    async def _probe_answer_bytes(self, target: str, link: Link, request: bytes) -> int:
        """The size of one whole answer to `request`, once the node's budget refilled."""
        waiter = self._sync_waiter = _SyncWaiter(peer_id=target)
        assert await link.send_payloads([request]), f"{target} closed the link"
        await wait_for_async(waiter.answered.is_set, 30.0, f"{target} to answer a sync request")
        self._sync_waiter = None
        return sum(len(block) + len(certificate) for block, certificate in waiter.blocks)

    # -- finding 11 -----------------------------------------------------------------------

    async def equivocate(
        self, targets: Sequence[str], *, height: int, round_: int = 0
    ) -> list[tuple[Vote, Vote]]:
        """As a validator: two prevotes and two precommits for (height, round), each pair
        for two different values, sent to every target.

        Returns:
            The conflicting pairs.
        """
        signer = Signer(self.chain_id, ValidatorId(self.peer_id), bytes(self._key))
        pairs = [
            tuple(
                signer.sign_vote(vote_type, Height(height), Round(round_), os.urandom(32))
                for _ in range(2)
            )
            for vote_type in (VoteType.PREVOTE, VoteType.PRECOMMIT)
        ]
        payloads = [encode_payload(Consensus(message=encode_message(v))) for p in pairs for v in p]
        for target in targets:
            link = await self.link(target)
            assert await link.send_payloads(payloads), f"{target} closed the link"
        return [(first, second) for first, second in pairs]

    # -- garbage, replay, oversize ------------------------------------------------------------

    async def garbage(self, target: str, *, rounds: int) -> list[bool]:
        """`rounds` links, each sending one frame of random bytes: unsealed (it cannot
        authenticate) and sealed (authentic, but no batch of payloads) in turn.

        Returns:
            Per round, whether the node closed the link.
        """
        closed = []
        for index in range(rounds):
            link = await self.link(target)
            junk = os.urandom(1024)
            sent = await (
                link.send_raw(junk) if index % 2 == 0 else link.send_frame(b"\xc1" + junk)
            )
            closed.append(sent and await link.closed_within(30.0))
        return closed

    def old_consensus_messages(self) -> list[bytes]:
        """Consensus messages the honest validators sent this participant, and the
        precommits of the certificates it heard: material for `replay`."""
        messages = list(self.consensus)
        if self.status is not None:
            certificate = decode_certificate(self.status.certificate)
            messages += [encode_message(vote) for vote in certificate.precommits]
        return messages

    async def replay(
        self, targets: Sequence[str], *, messages: Sequence[bytes], txs: Sequence[bytes]
    ) -> list[Link]:
        """Sends old consensus messages (as heard, signatures intact) and old transactions
        again to every target. Returns the links (an honest node has no reason to close
        them: a late, valid message is no fault)."""
        links = []
        payloads = [encode_payload(Consensus(message=m)) for m in messages]
        for target in targets:
            link = await self.link(target)
            for start in range(0, len(payloads), 100):
                chunk = payloads[start : start + 100]
                assert await link.send_payloads(chunk), f"{target} closed the link"
            assert await self.send_txs(link, txs), f"{target} closed the link"
            links.append(link)
        return links

    async def oversize(self, target: str) -> bool:
        """One WebSocket message a byte over the frame limit. True if the node closed the
        link."""
        link = await self.link(target)
        sent = await link.send_raw(bytes(self.frame_bytes_max + 1))
        return await link.closed_within(30.0) or not sent


async def abort_upgrades(url: str, *, count: int, addresses: int) -> None:
    """`count` keyless connections to the peer port at `url`, from `addresses` loopback
    source addresses (127.0.0.2, ...), that each send a WebSocket upgrade request and
    reset the connection at once, before the node can answer it."""
    assert 1 <= addresses <= 200
    host, _, port = url.removeprefix("http://").rpartition(":")
    request = (
        f"GET {PEER_PATH} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    ).encode()
    for index in range(count):
        source = (f"127.0.0.{2 + index % addresses}", 0)
        _, writer = await asyncio.open_connection(host, int(port), local_addr=source)
        writer.write(request)
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # with a zero linger: a reset, not a goodbye
