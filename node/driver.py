"""The consensus driver: the one task that owns the replica, the ledger and the store.

Theory of operation:
- Everything that changes consensus or ledger state goes through `inbox`, a bounded
  queue consumed by `run`; peer callbacks, timers and the API only enqueue. The driver
  executes the replica's actions in order: a `Persist` is an LMDB commit with sync, done
  before any later `Broadcast` of the same list is handed to the transport.
- Values are blocks: `BuildValue` makes one from the mempool, `CheckValue` decodes and
  validates one against the ledger, `Decide` settles one (ledger, then one store write
  transaction), after which the next height starts.
- The next height starts as soon as there is work (a pending transaction, a consensus
  message of that height from a peer, or a peer further ahead), or after the slow
  empty-block interval, so an idle network makes few empty blocks.
- Block sync: every node announces its height (STATUS) after each block and every
  second; a node that hears of a higher one asks that peer for blocks (SYNC_REQUEST),
  verifies each certificate against the validator set, and settles them in order. A
  validator routes them through its replica (`CommitReceived`), a bank node settles them
  directly. Either way a block is applied only with a valid commit certificate.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import hashlib
import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from consensus import crypto
from consensus.errors import WireError
from consensus.messages import (
    Action,
    ArmTimer,
    Broadcast,
    BuildValue,
    CheckValue,
    CommitCertificate,
    CommitReceived,
    Decide,
    DurableState,
    Event,
    Evidence,
    Height,
    HeightStarted,
    Message,
    Persist,
    Proposal,
    ProposalReceived,
    ReportEvidence,
    Round,
    Step,
    TimeoutFired,
    Value,
    ValueBuilt,
    ValueChecked,
    VoteReceived,
    VoteType,
)
from consensus.replica import Replica
from consensus.wire import (
    decode_certificate,
    decode_message,
    encode_certificate,
    encode_durable_state,
    encode_evidence,
    encode_message,
)
from node.block import (
    BLOCK_GROWTH_BYTES_MAX,
    TX_FRAMING_BYTES_MAX,
    Block,
    decode_block,
    encode_block,
)
from node.budget import Budgets
from node.clock import Clock
from node.effects import BlockEffects
from node.errors import BlockError, TxRefused
from node.histogram import FixedHistogram
from node.inbox import FairInbox
from node.ledger import SCHEDULE_HEIGHTS_AHEAD, Ledger
from node.mempool import Mempool
from node.protocol import (
    SYNC_BLOCKS_MAX,
    Consensus,
    Payload,
    Status,
    SyncBlocks,
    SyncRequest,
    Txs,
    encode_payload,
)
from node.store import Store
from node.tx import UETR_SIZE, Tx, sign_evidence

__all__ = [
    "BLOCK_STAGES",
    "Driver",
    "DriverLimits",
    "PeerPayload",
    "SendTo",
    "Settled",
    "log_replica_position",
]

log = logging.getLogger(__name__)
# The consensus core does no I/O; the node logs its progress under the core's name.
replica_log = logging.getLogger("consensus.replica")

INBOX_PER_PEER_MAX = 1_000  # a peer's payloads waiting for the driver; more are dropped
YIELD_EVERY = 100
# An evidence transaction expires when the ledger no longer knows its votes' set anyway.
EVIDENCE_EXPIRY_HEIGHTS = 3
# What one peer may make the driver do per second; more disconnects it. Honest validators
# send a few payloads per height and blocks of at most a frame; sync replies are bounded
# by our own requests.
PEER_PAYLOADS_PER_S = 1_000
PEER_PAYLOADS_BURST = 2_000
PEER_BYTES_PER_S = 16 * 1024 * 1024
PEER_BYTES_BURST = 32 * 1024 * 1024
# Sync answers one peer may get per second, so a small request is never amplified into
# an unbounded stream (issue 8 finding 8).
SYNC_SERVED_BYTES_PER_S = 8 * 1024 * 1024
SYNC_BACKOFF_MS = 10_000
STATUS_INTERVAL_S = 1.0
SYNC_TIMEOUT_MS = 3_000
# A node this many blocks behind the highest height a peer announced is still current: a
# bank node learns of each block from a STATUS and then fetches it, so it is routinely
# one or two behind. Further behind, it refuses to judge new transactions.
CATCH_UP_LAG_BLOCKS_MAX = 2
# ...unless it is following live blocks: it was current, lags at most FOLLOW_LAG_BLOCKS_MAX,
# and the oldest block it lacks was first announced less than FOLLOW_STALE_MS ago. Under
# load blocks come every 60-80 ms and a bank node is often 3 to 6 behind, yet all it does
# not know yet is that recent. A node that fetches blocks announced long ago (after a
# restart, a pause or a partition) is catching up, however few they are.
FOLLOW_LAG_BLOCKS_MAX = 16
FOLLOW_STALE_MS = 2_000
# Finality latency (admission into this node's mempool to settlement), in ms: a healthy
# network settles in under a second; a minute means rounds failed one after another.
FINALITY_BUCKET_BOUNDS_MS = (50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000)
# Where settling a block takes time: a synced block's decoding and validation (its
# certificate, header and transactions), then for every block the ledger's apply and
# the store's write.
BLOCK_STAGES = ("sync_decode", "sync_validate", "apply", "store")
# The round in which each height was decided: round 0 is the healthy case.
DECISION_ROUND_BUCKET_BOUNDS = (0, 1, 2, 3, 5, 10)


def log_replica_position(height: Height, round_: Round, step: Step) -> None:
    """The replica's `on_position_changed`: each new height, round and step at INFO
    (STYLE §8), once per change, never per message."""
    replica_log.info("h=%d r=%d step=%s", height, round_, step.name.lower())


@dataclass(frozen=True, slots=True, kw_only=True)
class DriverLimits:
    block_txs_max: int
    block_bytes_max: int
    empty_block_interval_ms: int
    sync_bytes_max: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Settled:
    """A block this node settled: what the API's waiters and the demo watch."""

    height: int
    block_hash: bytes
    tx_hashes: tuple[bytes, ...]
    settled_unix_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerPayload:
    peer_id: str
    payload: Payload
    size_bytes: int  # on the wire, for the peer's byte budget


@dataclass(frozen=True, slots=True, kw_only=True)
class Wake:
    """Re-check whether the next height may start."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TxsVerified:
    """The signature checks of a proposed block's transactions, done off the event loop:
    the decoded transactions, or why one failed."""

    height: Height
    value: Value
    block: Block
    txs: tuple[Tx, ...] | None
    error: BlockError | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Applied:
    """A block applied to the ledger and written, whose watchers are still to hear."""

    effects: BlockEffects
    certificate: CommitCertificate
    tx_hashes: tuple[bytes, ...]
    admitted_ms: list[int]


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncedBlocks:
    """A peer's answer to the sync request that asked from `first_height`, to settle."""

    peer_id: str
    first_height: int
    blocks: tuple[tuple[bytes, bytes], ...]


Input = Event | PeerPayload | Wake | TxsVerified | SyncedBlocks
SendTo = Callable[[str, bytes], None]
Disconnect = Callable[[str, str], None]  # (peer id, reason)


class Driver:
    """Owns the replica (validators only), the ledger, the store and the mempool."""

    def __init__(
        self,
        *,
        node_id: str,
        ledger: Ledger,
        store: Store,
        mempool: Mempool,
        replica: Replica | None,
        send: SendTo,
        validator_peers: tuple[str, ...],
        all_peers: tuple[str, ...],
        limits: DriverLimits,
        clock: Clock,
        rng: random.Random,
        disconnect: Disconnect,
        verify_executor: concurrent.futures.Executor,
        consensus_peers: frozenset[str] | None = None,
    ) -> None:
        """Args:
        validator_peers: where consensus messages and transactions go.
        consensus_peers: whose consensus messages are taken (default: validator_peers);
            anyone else sending one is disconnected. `set_peers` changes all three.
        verify_executor: where a proposed block's signatures are checked, so that a
            proposer's block of many unknown transactions never blocks the event loop."""
        self.node_id = node_id
        self.ledger = ledger
        self.store = store
        self.mempool = mempool
        self.replica = replica
        self._send = send
        self.validator_peers = validator_peers  # the peers that propose blocks
        self._all_peers = all_peers
        self._consensus_peers = (
            frozenset(validator_peers) if consensus_peers is None else consensus_peers
        )
        self.limits = limits
        self._clock = clock
        self._rng = rng  # which peer to ask for blocks
        self._disconnect = disconnect
        self._verify_executor = verify_executor
        self.inbox: FairInbox[Input] = FairInbox(per_peer_max=INBOX_PER_PEER_MAX)
        self._payload_budget = Budgets(
            rate_per_s=PEER_PAYLOADS_PER_S, burst=PEER_PAYLOADS_BURST, clock=clock
        )
        self._byte_budget = Budgets(
            rate_per_s=PEER_BYTES_PER_S, burst=PEER_BYTES_BURST, clock=clock
        )
        self._sync_budget = Budgets(
            rate_per_s=SYNC_SERVED_BYTES_PER_S, burst=limits.sync_bytes_max, clock=clock
        )
        self._wake_pending = False
        self.counters: collections.Counter[str] = collections.Counter()
        # Updated once per settled block, read when metrics are scraped (node/metrics.py).
        self.finality_latency_ms = FixedHistogram(FINALITY_BUCKET_BOUNDS_MS)
        self.decision_rounds = FixedHistogram(DECISION_ROUND_BUCKET_BOUNDS)
        # Seconds spent settling blocks, by stage (BLOCK_STAGES): where a catching-up
        # node's time goes (`somnet bench catchup`); a clock read per block, not per tx.
        self.stage_seconds: dict[str, float] = dict.fromkeys(BLOCK_STAGES, 0.0)
        # Heights peers claimed; a claim above what this node knows is certified is
        # believed only with the certificate that proves it (`_on_status`).
        self.peer_heights: dict[str, int] = {}
        self.certified_height = ledger.height  # the highest height proven to this node
        self._heard_validator = False  # a validator peer told us its height since start
        # Following live blocks (`caught_up`): since it was last within
        # CATCH_UP_LAG_BLOCKS_MAX, the heights above its own that peers announced, each
        # with when it was first heard (ms), ascending; at most FOLLOW_LAG_BLOCKS_MAX + 1.
        self._following = False
        self._announced: collections.deque[tuple[int, int]] = collections.deque()
        self.last_certificate: CommitCertificate | None = self._load_last_certificate()
        self.on_settled: list[Callable[[Settled], None]] = []
        self._height_running = False  # the replica runs the height after the ledger's
        self._wanted_since_ms = clock.now_ms()  # when the next height became startable by time
        self._checked: dict[bytes, Block] = {}  # value id -> block found valid
        # The sync request in flight: (peer, when in ms, first height asked).
        self._sync_asked: tuple[str, int, int] | None = None
        self._sync_backoff: dict[str, int] = {}  # peer -> not asked again before (ms)
        self._loop = asyncio.get_running_loop()

    def _load_last_certificate(self) -> CommitCertificate | None:
        height = self.ledger.height
        if height == 0:
            return None
        data = self.store.load_certificate(height)
        assert data is not None  # the store verified every height has one at open
        return decode_certificate(data)

    # -- the task ------------------------------------------------------------------------

    async def run(self) -> None:
        self._loop.call_later(self.limits.empty_block_interval_ms / 1000, self.wake)
        status = asyncio.create_task(self._announce_forever())
        try:
            # At boot, run a height at once: a restart may be inside one, and a new
            # network's first block tells the operator that consensus works.
            self._maybe_start_height(force=True)
            for handled in itertools.count(1):
                item = await self.inbox.get()
                if type(item) is SyncedBlocks:
                    await asyncio.sleep(0)  # the pipelined sync request leaves first
                self.handle(item)
                if handled % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # a full inbox must not starve the API and links
        finally:
            status.cancel()

    def set_peers(
        self,
        *,
        validator_peers: tuple[str, ...],
        all_peers: tuple[str, ...],
        consensus_peers: frozenset[str],
    ) -> None:
        """The peers as the ledger has them now (governance admits participants and
        changes the validator set while the node runs)."""
        self.validator_peers = validator_peers
        self._all_peers = all_peers
        self._consensus_peers = consensus_peers

    def submit_from_peer(self, item: PeerPayload) -> None:
        """Enqueue a peer's payload in its own queue. A peer over its rate or byte budget,
        or sending what only validators may send, is disconnected; a full queue drops the
        payload (consensus re-sends, sync re-asks)."""
        peer_id = item.peer_id
        if isinstance(item.payload, Consensus) and peer_id not in self._consensus_peers:
            self.misbehaved(peer_id, "consensus message from a participant that is no validator")
            return
        if not (
            self._payload_budget.take(peer_id, 1)
            and self._byte_budget.take(peer_id, item.size_bytes)
        ):
            self.misbehaved(peer_id, "over its payload budget")
            return
        if not self.inbox.put_from(peer_id, item):
            self.counters["inbox_full_dropped"] += 1

    def misbehaved(self, peer_id: str, reason: str) -> None:
        """Disconnect a peer and forget what it claimed and queued."""
        self.counters["peer_disconnected"] += 1
        self.inbox.drop_peer(peer_id)
        self.forget_peer(peer_id)
        self._disconnect(peer_id, reason)

    def forget_peer(self, peer_id: str) -> None:
        """A peer left (or lied): its claimed height no longer counts."""
        self.peer_heights.pop(peer_id, None)
        if self._sync_asked is not None and self._sync_asked[0] == peer_id:
            self._sync_asked = None

    def _submit_timeout(self, event: TimeoutFired) -> None:
        self.inbox.put_own(event)

    def wake(self) -> None:
        if not self._wake_pending:  # one pending wake-up is enough
            self._wake_pending = True
            self.inbox.put_own(Wake())

    def handle(self, item: Input) -> None:
        """Process one input; `run` feeds the inbox through here."""
        match item:
            case PeerPayload():
                self._on_peer_payload(item.peer_id, item.payload)
            case Wake():
                self._wake_pending = False
                self._maybe_start_height(force=False)
                self._maybe_sync()
            case TxsVerified():
                self._on_txs_verified(item)
            case SyncedBlocks():
                self._on_synced_blocks(item)
            case _:
                self._step(item)

    # -- the replica ---------------------------------------------------------------------

    def _step(self, event: Event) -> None:
        """Run one event through the replica, then the events its actions produce."""
        replica = self.replica
        assert replica is not None
        pending: collections.deque[Event] = collections.deque([event])
        while pending:
            for action in replica.step(pending.popleft(), self._clock.now_ms()):
                reply = self._execute(action)
                if reply is not None:
                    pending.append(reply)

    def _execute(self, action: Action) -> Event | None:
        match action:
            case Persist():
                self._persist(action.state)
            case Broadcast():
                payload = encode_payload(Consensus(message=encode_message(action.message)))
                for peer in self.validator_peers:
                    self._send(peer, payload)
            case ArmTimer():
                self._arm(action)
            case CheckValue():
                return self._check_value(action.height, action.value)
            case BuildValue():
                return self._build_value(action)
            case Decide():
                self._settle(action.value, action.certificate)
            case ReportEvidence():
                self._save_evidence(action.evidence)
        return None

    def _save_evidence(self, evidence: Evidence) -> None:
        """Keep the proof of an equivocation (both signed votes) for governance to act on;
        the first proof per validator and height is enough, so storage stays bounded."""
        first = evidence.first
        if self.store.save_evidence(first.height, first.voter, encode_evidence(evidence)):
            self.counters["evidence"] += 1
            log.warning("h=%d evidence of equivocation by %s stored", first.height, first.voter)
            self._submit_evidence(evidence)

    def _submit_evidence(self, evidence: Evidence) -> None:
        """Put the proof on chain, so the officers can act on it: an evidence transaction
        signed with this validator's key, kept in the store's pool like an API submission
        and gossiped to the validators, so the next proposer carries it (the ledger takes
        evidence only while it knows the set of the votes' height: a few heights). Its
        UETR derives from the evidence, so reporting it again is a DUPLICATE, not a second
        transaction."""
        replica = self.replica
        assert replica is not None  # only a replica reports evidence
        evidence_bytes = encode_evidence(evidence)
        try:
            tx_bytes = sign_evidence(
                replica.signer.sign_application,
                self.ledger.chain_id,
                signer=self.node_id,
                uetr=hashlib.sha256(evidence_bytes).digest()[:UETR_SIZE],
                expiry_height=self.ledger.height + EVIDENCE_EXPIRY_HEIGHTS,
                evidence=evidence,
            )
            tx = self.mempool.add(tx_bytes).tx
        except TxRefused as exc:  # not a validator now, too old, already on chain, ...
            self.counters["evidence_not_submitted"] += 1
            log.warning("evidence by %s not submitted: %s", evidence.first.voter, exc)
            return
        if tx.tx_hash not in self.mempool.kept:
            self.store.save_pool([(tx.tx_hash, tx.raw)])
            self.mempool.kept.add(tx.tx_hash)
        payload = encode_payload(Txs(txs=(tx.raw,)))
        for peer in self.validator_peers:
            self._send(peer, payload)
        self.counters["evidence_submitted"] += 1

    def _persist(self, state: DurableState) -> None:
        # Synchronous on purpose: the signature that follows must not leave before this.
        self.store.save_durable_state(encode_durable_state(state))

    def _arm(self, action: ArmTimer) -> None:
        event = TimeoutFired(height=action.height, round=action.round, timer=action.timer)
        delay_ms = max(0, action.deadline_ms - self._clock.now_ms())
        self._loop.call_later(delay_ms / 1000, self._submit_timeout, event)

    def _check_value(self, height: Height, value: Value) -> ValueChecked | None:
        """The cheap checks at once; the transactions' signatures in a worker thread,
        whose answer comes back through the inbox (`_on_txs_verified`)."""
        try:
            if len(value.payload) > self.limits.block_bytes_max:
                # Larger blocks could be decided but never synced: a sync frame holds the
                # block and its certificate. The proposer builds with the same measure.
                raise BlockError(f"block of {len(value.payload)} bytes is over the limit")
            block = decode_block(value.payload)
            if block.header.hash() != value.value_id:
                raise BlockError("value id is not the block hash")
        except BlockError as exc:
            return self._value_refused(height, value, exc)
        future = self._loop.run_in_executor(
            self._verify_executor,
            self.ledger.decode_and_verify,
            block.txs,
            self.mempool.verified_hashes(),  # read-only there; only this loop changes it
        )

        def verified(done: asyncio.Future[tuple[Tx, ...]]) -> None:
            if done.cancelled():
                return  # the node stops: its executor cancelled the checks not yet begun
            error = done.exception()
            if error is not None and not isinstance(error, BlockError):
                raise error  # our own bug: let it surface
            txs = None if error is not None else done.result()
            item = TxsVerified(height=height, value=value, block=block, txs=txs, error=error)
            self.inbox.put_own(item)

        future.add_done_callback(verified)
        return None

    def _on_txs_verified(self, item: TxsVerified) -> None:
        if item.height != self.ledger.height + 1:
            self.counters["stale_txs_verified"] += 1  # that height is settled already
            return
        try:
            if item.error is not None:
                raise item.error
            self.ledger.validate_block(item.block, now_ms=self._clock.unix_ms(), decoded=item.txs)
        except BlockError as exc:
            self._step(self._value_refused(item.height, item.value, exc))
            return
        self._checked[item.value.value_id] = item.block
        self._step(ValueChecked(height=item.height, value_id=item.value.value_id, valid=True))

    def _value_refused(self, height: Height, value: Value, exc: BlockError) -> ValueChecked:
        self.counters["block_invalid"] += 1
        log.warning("h=%d proposed block refused: %s", height, exc)
        return ValueChecked(height=height, value_id=value.value_id, valid=False)

    def _build_value(self, action: BuildValue) -> ValueBuilt:
        """A block from the mempool that this node's own check accepts: the encoded block
        is within block_bytes_max, the one measure of size both use (issue 8 finding 1).
        The transactions get what the encoded empty block leaves, less each transaction's
        framing (TX_FRAMING_BYTES_MAX) and the header's growth with the count."""
        time_ms = self._clock.unix_ms()
        empty = self.ledger.make_block(
            [], time_ms=time_ms, proposer=self.node_id, prev_certificate=self.last_certificate
        )
        budget = self.limits.block_bytes_max - len(encode_block(empty)) - BLOCK_GROWTH_BYTES_MAX
        txs = self.mempool.take(self.limits.block_txs_max, budget, TX_FRAMING_BYTES_MAX)
        block = self.ledger.make_block(
            txs, time_ms=time_ms, proposer=self.node_id, prev_certificate=self.last_certificate
        )
        block_hash = block.header.hash()
        self._checked[block_hash] = block  # built from verified transactions
        value = Value(value_id=block_hash, payload=encode_block(block))
        assert len(value.payload) <= self.limits.block_bytes_max, "built a block it refuses"
        log.debug("h=%d r=%d proposing %d txs", action.height, action.round, len(txs))
        return ValueBuilt(height=action.height, round=action.round, value=value)

    # -- settling ------------------------------------------------------------------------

    def _settle(self, value: Value, certificate: CommitCertificate) -> None:
        """Apply a decided block to the ledger and store it in one write transaction.

        A decided block that does not decode or apply means more than f validators
        are faulty: the exception stops the node rather than settle something wrong."""
        self._after_stored([self._apply_decided(value, certificate)])

    def _apply_decided(self, value: Value, certificate: CommitCertificate) -> Applied:
        """Apply a decided block and write it: on disk when this returns, or, inside a
        store batch (`_settle_synced_batch`), when the batch commits."""
        assert certificate.value_id == value.value_id
        block = self._checked.get(value.value_id)
        verified = block is not None
        started = time.perf_counter()
        if block is None:
            block = decode_block(value.payload)
        effects = self.ledger.apply_block(
            block,
            encode_certificate(certificate),
            verified=verified,
            block_bytes=value.payload,
            pooled=self.mempool.verified_hashes(),
        )
        applied = time.perf_counter()
        tx_hashes = tuple(tx_hash for tx_hash, _ in effects.tx_results)
        admitted_ms = self.mempool.admitted_ms(tx_hashes)  # before the pool forgets them
        self.store.commit_block(effects, self.mempool.remove_settled(effects.references_added))
        stored = time.perf_counter()
        self.stage_seconds["apply"] += applied - started
        self.stage_seconds["store"] += stored - applied
        return Applied(
            effects=effects, certificate=certificate, tx_hashes=tx_hashes, admitted_ms=admitted_ms
        )

    def _after_stored(self, applied: list[Applied]) -> None:
        """Once the store holds these blocks: tell the watchers, in height order, and
        make way for the next height."""
        now_ms = self._clock.now_ms()
        for one in applied:
            effects = one.effects
            self.finality_latency_ms.observe_all(now_ms - ms for ms in one.admitted_ms)
            self.decision_rounds.observe(one.certificate.round)
            self.last_certificate = one.certificate
            log.info("h=%d settled txs=%d hash=%s", effects.height, len(one.tx_hashes),
                     effects.block_hash.hex()[:16])  # fmt: skip
            settled = Settled(
                height=effects.height,
                block_hash=effects.block_hash,
                tx_hashes=one.tx_hashes,
                settled_unix_ms=self._clock.unix_ms(),
            )
            for callback in self.on_settled:
                callback(settled)
        self._note_position()
        self._checked.clear()
        self._height_running = False
        self._wanted_since_ms = now_ms
        self._loop.call_later(self.limits.empty_block_interval_ms / 1000, self.wake)
        if self.replica is not None:
            # Validators announce each height at once: bank nodes learn it from them and
            # sync the block. A node without a replica announces only every
            # STATUS_INTERVAL_S: nobody waits on its height, and with many bank nodes
            # their announcements per block were most of the network's messages (7
            # validators and 20 banks: 520 of 702 a block, each a frame to seal, send,
            # open and decode).
            self._announce()
        # Through the inbox, not inline: _settle runs inside a replica step, and the next
        # height's actions must not interleave with what is left of this one.
        self.wake()

    def _maybe_start_height(self, *, force: bool) -> None:
        """Start the replica on the next height when there is a reason to."""
        if self.replica is None or self._height_running:
            return
        # A peer's height is no reason: a claim must never change block production
        # (issue 8 finding 2). Peers at work on the next height start it by their signed
        # messages (`_on_consensus`).
        idle_ms = self._clock.now_ms() - self._wanted_since_ms
        due = idle_ms >= self.limits.empty_block_interval_ms
        if force or due or len(self.mempool) > 0:
            self._height_running = True
            self._start_height(Height(self.ledger.height + 1))

    def _start_height(self, height: Height) -> None:
        """Tell the replica that `height` starts, with the validator set in force there and
        the proposer order's input from the certificates the settled blocks carried."""
        assert height == self.ledger.height + 1
        self._step(
            HeightStarted(
                height=height,
                validators=self.ledger.validators_at(height),
                passed_over=self.ledger.passed_over_next(),
            )
        )

    def caught_up(self) -> bool:
        """Whether this node may judge new transactions: it has heard a validator's height
        since it started (unless it has no peers at all), and no peer announced a height
        more than CATCH_UP_LAG_BLOCKS_MAX beyond its own, or it is following live blocks
        (FOLLOW_LAG_BLOCKS_MAX): what it does not know yet is at most FOLLOW_STALE_MS old.

        Why not guess further behind: a node that has not settled a block answers from an
        old state, so a transaction whose UETR that block consumed would be answered
        pending (then DUPLICATE), and a lookup of a settled transaction NOT_FOUND, and a
        bank might pay again. A few blocks announced within the last moment are no worse
        than the answer racing the next block, as it always may."""
        if not self._all_peers:
            return True
        if not self._heard_validator and self.validator_peers:
            return False
        lag = max(self.peer_heights.values(), default=0) - self.ledger.height
        if lag <= CATCH_UP_LAG_BLOCKS_MAX:
            return True
        return self._following and lag <= FOLLOW_LAG_BLOCKS_MAX and not self._stale()

    def _stale(self) -> bool:
        """Whether the oldest block this node lacks was first announced FOLLOW_STALE_MS
        ago or more (recorded only while it follows)."""
        height = self.ledger.height
        for announced_height, heard_ms in self._announced:
            if announced_height > height:
                return self._clock.now_ms() - heard_ms >= FOLLOW_STALE_MS
        return False

    def _note_position(self, announced_height: int | None = None) -> None:
        """After a peer's height or a settled block: whether this node follows live blocks
        (it becomes current within CATCH_UP_LAG_BLOCKS_MAX, and stops following once too
        far or too long behind), and when each height above its own was first heard."""
        height = self.ledger.height
        announced = self._announced
        while announced and announced[0][0] <= height:
            announced.popleft()
        highest = max(self.peer_heights.values(), default=0)
        now_ms = self._clock.now_ms()
        if highest - height <= CATCH_UP_LAG_BLOCKS_MAX:
            if not self._following and (self._heard_validator or not self.validator_peers):
                self._following = True
                if highest > height:  # lacking these since now at the latest
                    announced.append((highest, now_ms))
        if not self._following:
            return
        if announced_height is not None and announced_height > max(
            height, announced[-1][0] if announced else 0
        ):
            announced.append((announced_height, now_ms))
        lag = highest - height
        if lag > FOLLOW_LAG_BLOCKS_MAX or (lag > CATCH_UP_LAG_BLOCKS_MAX and self._stale()):
            self._following = False  # catching up: current again only within the strict lag
            announced.clear()
        assert len(announced) <= FOLLOW_LAG_BLOCKS_MAX + 1

    def note_transactions(self) -> None:
        """Called when the mempool gains work: the next height may start now."""
        if not self._height_running and self.replica is not None:
            self.wake()

    # -- peers ---------------------------------------------------------------------------

    def _on_peer_payload(self, peer_id: str, payload: Payload) -> None:
        match payload:
            case Consensus():
                self._on_consensus(peer_id, payload.message)
            case Status():
                self._on_status(peer_id, payload)
            case SyncRequest():
                self._serve_sync(peer_id, payload)
            case SyncBlocks():
                self._on_sync_blocks(peer_id, payload)
            case _:
                self.counters["payload_unexpected"] += 1

    def _on_status(self, peer_id: str, status: Status) -> None:
        """Believe a claimed height above the certified one only with its certificate.
        A height this node settled itself needs none (and its validator set may be one
        the ledger no longer keeps: a peer far behind announces an old height)."""
        self.certified_height = max(self.certified_height, self.ledger.height)
        if status.height > self.certified_height:
            if not self._certifies(status):
                self.misbehaved(peer_id, f"claimed height {status.height} without a certificate")
                return
            self.certified_height = status.height
        self.peer_heights[peer_id] = status.height
        self._heard_validator |= peer_id in self.validator_peers
        self._note_position(status.height)
        self._maybe_sync()

    def _certifies(self, status: Status) -> bool:
        """Whether the status's certificate commits its height: checked against the set of
        that height, or, for a height past the sets this node knows, vouched for by more
        than a third of the power of the latest set it knows (at least one honest
        validator it knows signed it: the light-client rule of trusting the overlap)."""
        try:
            certificate = decode_certificate(status.certificate)
        except WireError:
            return False
        if status.height < 1 or certificate.height != status.height:
            return False
        chain_id, known = self.ledger.chain_id, self.ledger.height + SCHEDULE_HEIGHTS_AHEAD
        if certificate.height <= known:
            validators = self.ledger.validators_at(certificate.height)
            return crypto.verify_certificate(chain_id, certificate, validators)
        latest = self.ledger.validators_at(known)
        power = 0
        for vote in certificate.precommits:
            if latest.get(vote.voter) is None:
                continue  # joined since: unknown here, neither for nor against
            if vote.vote_type is not VoteType.PRECOMMIT or (
                vote.height,
                vote.round,
                vote.value_id,
            ) != (certificate.height, certificate.round, certificate.value_id):
                return False
            if not crypto.verify_vote(chain_id, vote, latest):
                return False
            power += latest.power_of(vote.voter)
        return 3 * power > latest.total_power

    def _on_consensus(self, peer_id: str, data: bytes) -> None:
        if self.replica is None:
            self.counters["consensus_not_validator"] += 1
            return
        try:
            message = decode_message(data)
        except WireError:
            self.misbehaved(peer_id, "malformed consensus message")
            return
        if message.height == self.ledger.height + 1 and not self._height_running:
            # Peers are already at work on it; a signed message proves it, a claim doesn't.
            if not self._signed_by_a_validator(message):
                self.misbehaved(peer_id, "consensus message with a bad signature")
                return
            self._maybe_start_height(force=True)
        if isinstance(message, Proposal):
            self._step(ProposalReceived(proposal=message))
        else:
            self._step(VoteReceived(vote=message))

    def _signed_by_a_validator(self, message: Message) -> bool:
        chain_id, validators = self.ledger.chain_id, self.ledger.validators_at(message.height)
        if isinstance(message, Proposal):
            return crypto.verify_proposal(chain_id, message, validators)
        return crypto.verify_vote(chain_id, message, validators)

    def _announce(self) -> None:
        certificate = self.last_certificate
        status = Status(
            height=self.ledger.height,
            certificate=b"" if certificate is None else encode_certificate(certificate),
        )
        payload = encode_payload(status)
        for peer in self._all_peers:
            self._send(peer, payload)

    async def _announce_forever(self) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL_S)
            self._announce()
            self.wake()  # also re-checks sync timeouts and the empty-block interval

    def _maybe_sync(self) -> None:
        height = self.ledger.height
        now = self._clock.now_ms()
        ahead = [
            p
            for p, h in self.peer_heights.items()
            if h > height and self._sync_backoff.get(p, 0) <= now
        ]
        if not ahead:
            return
        if self._sync_asked is not None:
            peer, when, _ = self._sync_asked
            if now - when < SYNC_TIMEOUT_MS:
                return
            self.counters["sync_timeout"] += 1
            self._sync_backoff[peer] = now + SYNC_BACKOFF_MS
            self._sync_asked = None
            self.peer_heights.pop(peer, None)  # its claim failed: forgotten until it repeats
            ahead = [p for p in ahead if p != peer]
            if not ahead:
                return
        self._ask_blocks(ahead, height + 1, now)

    def _ask_blocks(self, ahead: list[str], first_height: int, now: int) -> None:
        """Ask one of the peers `ahead` (those that claimed a height of at least
        `first_height`) for the blocks from `first_height`. Any will do; a random one, so
        a peer that claims a height it cannot serve is not asked again and again, and
        successive requests spread the serving over the peers' sync budgets."""
        peer = self._rng.choice(sorted(ahead))
        count = min(SYNC_BLOCKS_MAX, self.peer_heights[peer] - first_height + 1)
        self._send(peer, encode_payload(SyncRequest(first_height=first_height, count=count)))
        self._sync_asked = (peer, now, first_height)

    def _serve_sync(self, peer_id: str, request: SyncRequest) -> None:
        """Answer with the blocks asked for, up to a frame and to what the peer's sync
        budget has left, so nobody turns small requests into a flood of blocks."""
        blocks: list[tuple[bytes, bytes]] = []
        size = 0
        size_max = min(self.limits.sync_bytes_max, int(self._sync_budget.available(peer_id)))
        first = max(request.first_height, 1)  # a peer's request; height 0 has no block
        last = min(request.first_height + request.count - 1, self.ledger.height)
        for height in range(first, last + 1):
            block = self.store.load_block(height)
            certificate = self.store.load_certificate(height)
            assert block is not None and certificate is not None
            if size + len(block) + len(certificate) > size_max:
                break
            blocks.append((block, certificate))
            size += len(block) + len(certificate)
        if first <= last and not blocks:
            self.counters["sync_throttled"] += 1
        taken = self._sync_budget.take(peer_id, size)
        assert taken
        # Answered even when empty, so the asker moves on at once instead of timing out.
        self._send(peer_id, encode_payload(SyncBlocks(blocks=tuple(blocks))))

    def _on_sync_blocks(self, peer_id: str, payload: SyncBlocks) -> None:
        """Pipelined: the next range is asked for before this one is settled, and
        settling waits for the next turn of the event loop (`SyncedBlocks`), so the
        request leaves first and a peer prepares the next answer while this node applies
        this one. (`run` yields to the loop before it handles a `SyncedBlocks`.)"""
        if self._sync_asked is None or self._sync_asked[0] != peer_id:
            self.counters["sync_unsolicited"] += 1
            return
        first_height = self._sync_asked[2]
        self._sync_asked = None
        after = first_height + len(payload.blocks)
        ahead = [
            p
            for p, h in self.peer_heights.items()
            if h >= after and self._sync_backoff.get(p, 0) <= self._clock.now_ms()
        ]
        if payload.blocks and ahead and first_height == self.ledger.height + 1:
            self._ask_blocks(ahead, after, self._clock.now_ms())
        self.inbox.put_own(
            SyncedBlocks(peer_id=peer_id, first_height=first_height, blocks=payload.blocks)
        )

    def _on_synced_blocks(self, item: SyncedBlocks) -> None:
        """Settle a sync answer's blocks in order, up to the first that fails."""
        peer_id = item.peer_id
        height_before = self.ledger.height
        # Blocks settled meanwhile (from an earlier answer, or the replica's own
        # decision) are skipped.
        settled = height_before + 1 - item.first_height
        if settled < 0 or (settled > 0 and settled >= len(item.blocks)):
            # Asked for before an earlier answer failed part-way, or all settled already:
            # not this peer's fault.
            self.counters["sync_stale"] += 1
            self._maybe_sync()
            return
        if self.replica is None:
            self._settle_synced_batch(peer_id, item.blocks[settled:])
        else:
            for block_bytes, certificate_bytes in item.blocks[settled:]:
                if not self._settle_synced(peer_id, block_bytes, certificate_bytes):
                    break
        if self.ledger.height == height_before:
            # It claimed to be ahead and served nothing we could settle: forget the claim
            # and ask others.
            self._sync_backoff[peer_id] = self._clock.now_ms() + SYNC_BACKOFF_MS
            self.peer_heights.pop(peer_id, None)
        self._maybe_sync()

    def _settle_synced_batch(self, peer_id: str, blocks: tuple[tuple[bytes, bytes], ...]) -> None:
        """A node without a replica settles a sync answer's blocks, up to the first that
        fails, in one store write transaction (one fsync, not one per block); the
        watchers hear of them once it is committed."""
        applied: list[Applied] = []
        with self.store.batch(f"synced blocks from height {self.ledger.height + 1}"):
            for block_bytes, certificate_bytes in blocks:
                checked = self._check_synced(peer_id, block_bytes, certificate_bytes)
                if checked is None:
                    break
                applied.append(self._apply_decided(*checked))
            committing = time.perf_counter()
        self.stage_seconds["store"] += time.perf_counter() - committing
        if applied:
            self._after_stored(applied)

    def _settle_synced(self, peer_id: str, block_bytes: bytes, certificate_bytes: bytes) -> bool:
        """Settle one block from a peer if it is the next one, certified and valid: a
        validator routes it through its replica."""
        checked = self._check_synced(peer_id, block_bytes, certificate_bytes)
        if checked is None:
            return False
        value, certificate = checked
        height_before = self.ledger.height
        if not self._height_running:
            self._height_running = True
            self._start_height(Height(height_before + 1))
        if self.ledger.height == height_before:  # the replica may have decided it already
            self._step(CommitReceived(value=value, certificate=certificate))
        return self.ledger.height > height_before

    def _check_synced(
        self, peer_id: str, block_bytes: bytes, certificate_bytes: bytes
    ) -> tuple[Value, CommitCertificate] | None:
        """A block from a peer as a decided value, if it is the next one, certified and
        valid; None (counted, logged) otherwise."""
        started = time.perf_counter()
        try:
            block = decode_block(block_bytes)
            certificate = decode_certificate(certificate_bytes)
            value_id = block.header.hash()
            if block.header.height != self.ledger.height + 1:
                return None  # stale or out of order; the next request starts from ours
            decoded = time.perf_counter()
            self.stage_seconds["sync_decode"] += decoded - started
            # The certificate first (the ledger checks it before the rest): it is cheap,
            # and it makes the rest worth checking. A certificate copied onto altered
            # transactions is refused as a peer fault (the tx root), not a crash. A
            # certified block's signatures are not checked again: the validators that
            # certified it did (node/ledger.py, "Certified blocks in sync").
            self.ledger.validate_block(block, certificate=certificate)
            self.stage_seconds["sync_validate"] += time.perf_counter() - decoded
        except (BlockError, WireError) as exc:
            self.counters["sync_refused"] += 1
            log.warning("peer=%s sent a block that is refused in sync: %s", peer_id, exc)
            return None
        self._checked[value_id] = block
        return Value(value_id=value_id, payload=block_bytes), certificate
