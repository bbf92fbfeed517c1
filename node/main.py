"""Start one node: load and check everything, then serve peers and the API until stopped.

Faults of the environment or the operator (bad config, corrupted store, port in use)
stop the node through `fatal` with a distinct exit status, before it touches the network.

Who the node is, by the ledger (governance changes participants and keys at run time):
- node.toml's node.id names the participant. If the node's ledger knows it, the key file
  must hold the key the ledger holds for it now, else the node stops (CONFIG). After a
  key rotation, the operator replaces node_key.json once the rotation settled on this
  node (the running node warns when it sees it) and restarts.
- A node.id the ledger does not know (a participant admitted after genesis, whose node
  starts from the genesis file and its own key) starts as a follower: it syncs from its
  peers, which accept its links once their ledgers know it. When its own ledger learns
  the participant, the key file must hold its key, else the node stops (CONFIG).
- Peers, their link keys and the validators consensus messages go to follow the ledger:
  participants admitted while the node runs are dialed (unless node.toml lists its
  peers), a handshake is checked against the ledger's key at that moment, and consensus
  messages go to the validator sets of the next two heights.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import random
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from nacl.signing import SigningKey

from consensus.crypto import Signer
from consensus.messages import DurableState, Height, ValidatorId
from consensus.replica import Replica
from consensus.wire import decode_durable_state
from node.anchor import Anchorer, AnchorError, load_anchor_key
from node.api import ApiContext, ApiSettings, build_api
from node.api_auth import AuthLimits
from node.api_server import API_GUARD, ApiGuard, ApiLimits, ApiSite
from node.clock import SystemClock
from node.config import ConfigError, NodeConfig, load_config, supervisor_keys
from node.descriptors import descriptors_needed, raise_descriptor_limit
from node.driver import (
    Disconnect,
    Driver,
    DriverLimits,
    PeerPayload,
    SendTo,
    Settled,
    log_replica_position,
)
from node.errors import GenesisError
from node.fatal import FatalReason, fatal
from node.genesis import Genesis, load_genesis
from node.intake import Intake
from node.keys import KeyFileError, load_key_file
from node.ledger import Ledger, open_ledger
from node.log_format import configure_logging
from node.mempool import Mempool
from node.metrics import MetricsSources, build_metrics_app
from node.protocol import ProtocolError, Txs, decode_payload
from node.runtime import long_lived_state
from node.store import Store, StoreCorrupted, StoreError, StoreFull
from node.throttled_log import ThrottledLog
from node.transport import PeerAddress, PeerNetwork, TransportLimits
from node.verifier import TxVerifier, VerifierLimits

__all__ = ["run_node"]

log = logging.getLogger(__name__)
# Gossip a validator drops unchecked (the peer spent its check budget): the sender's
# resend covers it, and one line per peer per interval says it happens.
gossip_log = ThrottledLog(log, clock=SystemClock())

RECURSION_LIMIT = 1000  # CPython's default: deep input fails with RecursionError, not a crash
PEER_PORT_SLACK = 8  # connections one address may hold beyond its peers and handshakes
BLOCK_VERIFY_WORKERS = 2  # threads checking a proposed block's signatures (libsodium frees the GIL)


ROLES_THAT_MAY_VALIDATE = frozenset({"validator", "issuer"})  # set_validators admits these


class NodeKeyMismatch(Exception):
    """The ledger learned this node's participant with another key than its key file's."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Loaded:
    config: NodeConfig
    genesis: Genesis
    node_id: str
    known_at_start: bool
    """Whether the ledger knew the participant when the node started (else a follower)."""
    signer_seed: bytes
    public_key: bytes
    store: Store
    ledger: Ledger


def load(home: Path) -> Loaded:
    """Everything a node needs from disk, checked; any fault is fatal with a reason."""
    try:
        config = load_config(home)
        key = load_key_file(config.key_file)
    except (ConfigError, KeyFileError) as exc:
        fatal(FatalReason.CONFIG, str(exc))
    try:
        genesis = load_genesis(config.genesis_file)
    except GenesisError as exc:
        fatal(FatalReason.CONFIG, f"{config.genesis_file}: {exc}")
    try:
        store = Store.open(
            config.data_dir,
            chain_id=genesis.chain_id,
            map_size_bytes=config.store_map_size_bytes,
        )
        ledger = open_ledger(genesis, store)
    except StoreCorrupted as exc:
        fatal(FatalReason.STORE_CORRUPTED, str(exc))
    except StoreError as exc:
        fatal(FatalReason.STORE_ERROR, str(exc))
    except OSError as exc:  # node.data_dir is a file, or in a directory we cannot write
        fatal(FatalReason.STORE_ERROR, f"node.data_dir {config.data_dir}: {exc}")
    public_key = bytes(key.verify_key)
    me = ledger.participant(config.node_id)
    if me is not None and public_key != me.public_key:
        fatal(
            FatalReason.CONFIG,
            f"{config.key_file}: key is not {me.participant_id}'s (its key at height "
            f"{ledger.height}; after a rotation, replace the key file once this node has "
            "settled the rotation)",
        )
    participant_ids = set(ledger.participants)
    for peer in config.peers:
        if peer.peer_id not in participant_ids:
            where = f"{config.home / 'node.toml'}: peers"
            fatal(FatalReason.CONFIG, f"{where}: id {peer.peer_id!r} is not a participant")
    # A supervisor's keyid naming a participant would replace that participant's key and
    # let whoever holds the supervisor key sign as it (and read everything as it).
    for supervisor_id in supervisor_keys(config):
        if supervisor_id in participant_ids:
            message = f"id {supervisor_id!r} is a participant: give supervisors ids of their own"
            fatal(FatalReason.CONFIG, f"api.supervisor_keys: {message}")
    return Loaded(
        config=config,
        genesis=genesis,
        node_id=config.node_id,
        known_at_start=me is not None,
        signer_seed=bytes(key),
        public_key=public_key,
        store=store,
        ledger=ledger,
    )


def peer_addresses(loaded: Loaded) -> list[PeerAddress]:
    """Peers from node.toml if it lists any, else every other participant the ledger
    knows now (`follow_ledger` adds those admitted later)."""
    if loaded.config.peers:
        return [PeerAddress(peer_id=p.peer_id, url=p.url) for p in loaded.config.peers]
    return [
        PeerAddress(peer_id=p.participant_id, url=f"http://{p.peer_address}")
        for p in loaded.ledger.participants.values()
        if p.participant_id != loaded.node_id
    ]


def validator_targets(ledger: Ledger, peers: Sequence[str]) -> tuple[str, ...]:
    """The peers in the validator set of the next height or the one after (a change
    decided in the last block is in force there): where consensus messages and
    transactions go."""
    next_height = ledger.height + 1
    members = {
        v.validator_id
        for height in (next_height, next_height + 1)
        for v in ledger.validators_at(height).validators
    }
    return tuple(p for p in peers if p in members)


def consensus_senders(ledger: Ledger, peers: Sequence[str]) -> frozenset[str]:
    """The peers whose consensus messages are taken: every participant whose role may
    put it in a validator set (a node a few heights behind or ahead sees another set,
    and a member must not be cut off for that; the core checks each message against its
    height's set). A bank sending one is disconnected."""
    participants = ledger.participants
    return frozenset(
        p
        for p in peers
        if (participant := participants.get(p)) is not None
        and participant.role in ROLES_THAT_MAY_VALIDATE
    )


def build_replica(loaded: Loaded) -> Replica | None:
    """A replica if this node's participant may ever validate: its role may be in a
    validator set, or the ledger does not know it yet (admitted after genesis, its role
    unknown until synced). The replica takes the set per height (HeightStarted) and
    only follows the heights it is not in."""
    participant = loaded.ledger.participant(loaded.node_id)
    if participant is not None and participant.role not in ROLES_THAT_MAY_VALIDATE:
        return None
    me = ValidatorId(loaded.node_id)
    replica_config = loaded.config.replica_config(loaded.genesis.chain_id)
    replica_config.validate()  # load_config had the core check the same settings
    data = loaded.store.load_durable_state()
    durable = (
        decode_durable_state(data)
        if data is not None
        else DurableState.initial(Height(loaded.ledger.height + 1))
    )
    signer = Signer(loaded.genesis.chain_id, me, loaded.signer_seed)
    return Replica(replica_config, signer, durable, on_position_changed=log_replica_position)


def build_driver(
    loaded: Loaded,
    replica: Replica | None,
    peers: list[PeerAddress],
    send: SendTo,
    disconnect: Disconnect,
    verify_executor: concurrent.futures.Executor,
) -> Driver:
    config = loaded.config
    clock = SystemClock()
    peer_ids = [p.peer_id for p in peers]
    return Driver(
        node_id=loaded.node_id,
        ledger=loaded.ledger,
        store=loaded.store,
        mempool=Mempool(loaded.ledger, txs_max=config.mempool_txs_max, clock=clock),
        replica=replica,
        send=send,
        validator_peers=validator_targets(loaded.ledger, peer_ids),
        all_peers=tuple(peer_ids),
        consensus_peers=consensus_senders(loaded.ledger, peer_ids),
        limits=DriverLimits(
            block_txs_max=config.block_txs_max,
            block_bytes_max=config.block_bytes_max,
            empty_block_interval_ms=config.empty_block_interval_ms,
            sync_bytes_max=config.sync_bytes_max,
        ),
        clock=clock,
        rng=random.Random(),
        disconnect=disconnect,
        verify_executor=verify_executor,
    )


def build_anchorer(loaded: Loaded) -> Anchorer | None:
    """The anchoring task, if this node anchors; a bad key file is a config fault."""
    config = loaded.config
    if not config.anchor_enabled:
        return None
    assert config.anchor_key_file is not None  # load_config sets the default
    try:
        account = load_anchor_key(config.anchor_key_file)
    except AnchorError as exc:
        fatal(FatalReason.CONFIG, f"anchor.key_file: {exc}")
    return Anchorer(
        config=config,
        chain_id=loaded.genesis.chain_id,
        store=loaded.store,
        account=account,
        settled_height=loaded.ledger.height,
    )


def build_network(
    loaded: Loaded,
    peers: list[PeerAddress],
    on_payload: Callable[[str, bytes], Awaitable[None] | None],
    on_peer_down: Callable[[str], None],
) -> PeerNetwork:
    allowed_hosts = None
    if loaded.config.peer_allow_only_genesis_addresses:
        # The hosts the ledger names (genesis's and admitted participants', `add_peer`
        # adds later ones), and those node.toml reaches peers by (container names).
        participants = loaded.ledger.participants.values()
        allowed_hosts = {host_of(p.peer_address) for p in participants}
        allowed_hosts |= {urlsplit(p.url).hostname or "" for p in loaded.config.peers} - {""}
    return PeerNetwork(
        chain_id=loaded.genesis.chain_id,
        self_id=loaded.node_id,
        signing_key=SigningKey(loaded.signer_seed),
        known_keys=loaded.ledger.public_key_of,  # at each handshake: admitted, rotated
        peers=peers,
        on_payload=on_payload,
        limits=TransportLimits(
            frame_bytes_max=loaded.config.frame_bytes_max,
            queue_payloads_max=loaded.config.peer_queue_payloads_max,
        ),
        allowed_hosts=allowed_hosts,
        on_peer_down=on_peer_down,
    )


def follow_ledger(loaded: Loaded, network: PeerNetwork, driver: Driver) -> None:
    """After each settled block: dial participants admitted since, and send consensus
    messages to the validators in force now.

    Raises:
        NodeKeyMismatch: the ledger just learned this node's participant, with another key.
    """
    ledger = loaded.ledger
    if not loaded.config.peers:
        for p in ledger.participants.values():
            peer = PeerAddress(peer_id=p.participant_id, url=f"http://{p.peer_address}")
            network.add_peer(peer, host_of(p.peer_address))
    peer_ids = network.peer_ids()
    driver.set_peers(
        validator_peers=validator_targets(ledger, peer_ids),
        all_peers=tuple(peer_ids),
        consensus_peers=consensus_senders(ledger, peer_ids),
    )
    key = ledger.public_key_of(loaded.node_id)
    if key is None or key == loaded.public_key:
        return
    if not loaded.known_at_start:
        raise NodeKeyMismatch(
            f"{loaded.config.key_file}: the ledger admitted {loaded.node_id} with another key"
        )
    log.warning("node=%s key rotated at height %d: replace %s with the new key and restart",
                loaded.node_id, ledger.height, loaded.config.key_file)  # fmt: skip


def host_of(address: str) -> str:
    """The host of a genesis host:port (an IPv6 address without its brackets)."""
    return address.rpartition(":")[0].strip("[]")


def route_payload(
    driver: Driver,
    intake: Intake,
    network: PeerNetwork,
    verifier: TxVerifier,
    peer_id: str,
    data: bytes,
) -> Awaitable[None] | None:
    """Transactions go to the intake once verified off the loop (the link waits for them);
    everything else to the driver's inbox. A payload that does not decode closes the link:
    no honest peer sends one."""
    try:
        payload = decode_payload(data)
    except ProtocolError as exc:
        driver.counters["payload_malformed"] += 1
        network.disconnect(peer_id, f"a payload that does not decode ({exc})")
        return None
    if isinstance(payload, Txs):
        if not intake.proposes:  # it would refuse them all: spend no checks on them
            driver.counters["gossip_tx_refused"] += len(payload.txs)
            return None
        return admit_gossip(driver, intake, network, verifier, peer_id, payload.txs)
    driver.submit_from_peer(PeerPayload(peer_id=peer_id, payload=payload, size_bytes=len(data)))
    return None


async def admit_gossip(
    driver: Driver,
    intake: Intake,
    network: PeerNetwork,
    verifier: TxVerifier,
    peer_id: str,
    txs: Sequence[bytes],
) -> None:
    batch = await verifier.check(
        peer_id, txs, lambda checked: intake.admit_verified(peer_id, checked)
    )
    counts = {
        "gossip_tx_refused": batch.refused_count,
        "gossip_tx_over_budget": batch.over_budget_count,
        "gossip_peer_fault": int(batch.fault is not None),
    }
    driver.counters.update({name: count for name, count in counts.items() if count})
    if batch.over_budget_count:
        gossip_log.warning(peer_id, "over budget", "peer=%s gossip over its check budget: "
                           "%d transactions dropped unchecked", peer_id,
                           batch.over_budget_count)  # fmt: skip
    if batch.fault is not None:
        network.disconnect(peer_id, f"gossiped a transaction no honest peer sends: {batch.fault}")


def peer_port_limits(peer_count: int, transport: TransportLimits) -> ApiLimits:
    """Connections on the peer port, bounded like the API's. A connection that sends no
    request head within the handshake deadline is cut, so raw idle sockets cannot pile up
    before the handshake's own bounds (per address, with eviction) apply. One address may
    hold every peer's link (all peers may share it, behind NAT or on one test machine)
    and every handshake slot; the total adds room for the others' handshakes."""
    per_address = peer_count + transport.handshakes_max + PEER_PORT_SLACK
    return ApiLimits(
        connections_max=per_address + transport.handshakes_max,
        connections_per_address_max=per_address,
        header_timeout_ms=transport.handshake_timeout_ms,
        body_timeout_ms=transport.handshake_timeout_ms,
    )


async def listen(
    runner: web.AppRunner, key: str, address: str, ssl_context: ssl.SSLContext | None = None
) -> None:
    """Serve `runner` at `address`, every connection through the application's guard."""
    await runner.setup()
    host, _, port = address.rpartition(":")
    try:
        await ApiSite(runner, host, int(port), ssl_context=ssl_context).start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fatal(FatalReason.ADDRESS_IN_USE, f"{key} {address} is in use")
        # An unknown host, an address of another machine, a port we may not bind.
        fatal(FatalReason.CONFIG, f"{key} {address}: cannot listen: {exc}")


def check_descriptors(config: NodeConfig, peer_count: int) -> None:
    """Raise the descriptor limit; stop (CONFIG) if the API's connections cannot fit."""
    available = raise_descriptor_limit()
    connections_max = config.api_connections_max
    needed = descriptors_needed(api_connections_max=connections_max, peer_count=peer_count)
    if available < needed:
        fatal(
            FatalReason.CONFIG,
            f"api.connections_max {connections_max} with {peer_count} peers needs {needed} "
            f"file descriptors, the limit is {available}: raise the hard RLIMIT_NOFILE "
            "(ulimit -Hn, systemd LimitNOFILE=) or lower api.connections_max",
        )


def api_settings(config: NodeConfig) -> ApiSettings:
    connections = ApiLimits(
        connections_max=config.api_connections_max,
        connections_per_address_max=config.api_connections_per_address_max,
        header_timeout_ms=config.api_header_timeout_ms,
        body_timeout_ms=config.api_body_timeout_ms,
    )
    auth = AuthLimits(
        signature_age_s_max=config.api_signature_age_s_max,
        requests_per_s_max=config.api_requests_per_s_max,
        waits_max=config.api_waits_max,
    )
    return ApiSettings(
        connections=connections,
        auth=auth,
        body_bytes_max=config.api_body_bytes_max,
        batch_txs_max=config.api_batch_txs_max,
        page_items_max=config.api_page_items_max,
        supervisor_keys=supervisor_keys(config),
    )


def api_tls(config: NodeConfig) -> ssl.SSLContext | None:
    """The API's TLS context when node.toml names a certificate and key; fatal if they
    cannot be loaded (a node must not fall back to plain HTTP)."""
    if config.api_tls_cert_file is None or config.api_tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.api_tls_cert_file, config.api_tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        fatal(FatalReason.CONFIG, f"api.tls_cert_file/tls_key_file: cannot load: {exc}")
    return context


async def serve(loaded: Loaded, stop: asyncio.Event) -> None:
    replica = build_replica(loaded)
    peers = peer_addresses(loaded)
    check_descriptors(loaded.config, len(peers))
    # The network delivers to the driver and the driver sends through the network; the
    # callback is only called after network.start(), when both exist.
    verifier = TxVerifier(loaded.ledger.check_tx, limits=VerifierLimits(), clock=SystemClock())
    network = build_network(
        loaded,
        peers,
        lambda peer, data: route_payload(driver, intake, network, verifier, peer, data),
        lambda peer: driver.forget_peer(peer),  # what it claimed counts no more (finding 2)
    )
    # A proposed block's signatures are checked here, off the event loop.
    block_verifier = concurrent.futures.ThreadPoolExecutor(
        max_workers=BLOCK_VERIFY_WORKERS, thread_name_prefix="block-verify"
    )
    driver = build_driver(loaded, replica, peers, network.send, network.disconnect, block_verifier)
    anchorer = build_anchorer(loaded)
    if anchorer is not None:
        driver.on_settled.append(anchorer.note_settled)
    config_failures: list[NodeKeyMismatch] = []

    def on_settled(settled: Settled) -> None:
        try:
            follow_ledger(loaded, network, driver)
        except NodeKeyMismatch as exc:
            config_failures.append(exc)
            stop.set()

    driver.on_settled.append(on_settled)

    def to_validators(payload: bytes) -> None:
        # Transactions go only where they can be proposed: other banks never see them.
        for peer in driver.validator_peers:  # read each time: the set follows the ledger
            network.send(peer, payload)

    intake = Intake(
        mempool=driver.mempool,
        store=loaded.store,
        broadcast=to_validators,
        wake=driver.note_transactions,
        caught_up=driver.caught_up,
        proposes=replica is not None,
        gossip_bytes_max=loaded.config.block_bytes_max,  # half a frame
    )
    driver.on_settled.append(lambda settled: intake.note_settled(settled.tx_hashes))
    restored = intake.restore()
    store_failures: list[StoreError] = []

    def on_store_failure(exc: StoreError) -> None:
        store_failures.append(exc)
        stop.set()

    context = ApiContext(
        driver=driver,
        intake=intake,
        connected_peers=network.connected_peers,
        on_store_failure=on_store_failure,
        remittance_key=SigningKey(loaded.signer_seed),
        anchorer=anchorer,
    )
    # The guard's middleware ends the head deadline once the upgrade request arrived.
    peer_guard = ApiGuard(peer_port_limits(len(peers), network.limits))
    peer_app = web.Application(client_max_size=1024, middlewares=[peer_guard.middleware()])
    peer_app[API_GUARD] = peer_guard
    peer_app.router.add_routes(network.routes())
    api_app = build_api(context, api_settings(loaded.config))
    # No access log on the peer port: anyone can connect, as often as they like.
    runners = [web.AppRunner(peer_app, access_log=None), web.AppRunner(api_app, access_log=None)]
    await listen(runners[0], "p2p.listen", loaded.config.peer_listen)
    await listen(runners[1], "api.listen", loaded.config.api_listen, api_tls(loaded.config))
    if loaded.config.metrics_listen:  # its own address, never the API's (node/metrics.py)
        sources = MetricsSources(
            node_id=driver.node_id,
            driver=driver,
            intake=intake,
            connected_peers=network.connected_peers,
            transport_counters=network.counters,
            api_guard=api_app[API_GUARD],
        )
        runners.append(web.AppRunner(build_metrics_app(sources), access_log=None))
        await listen(runners[2], "metrics.listen", loaded.config.metrics_listen)
    await network.start()
    log.info("node=%s height=%d role=%s validating=%s pending=%d ready", driver.node_id,
             loaded.ledger.height, loaded.ledger.role_of(driver.node_id),
             loaded.ledger.validates(driver.node_id), restored)  # fmt: skip
    driver_task = asyncio.create_task(driver.run())
    relay_task = asyncio.create_task(intake.relay_again_forever())
    # Beside the driver, never in it: the EVM endpoint can only delay anchoring.
    anchor_task = None if anchorer is None else asyncio.create_task(anchorer.run())
    stopped = asyncio.create_task(stop.wait())
    # The anchoring task is watched too: if it ever ends, that is our bug, and the node
    # stops on it rather than run on without anchoring.
    watched = {driver_task, relay_task, stopped}
    watched |= {anchor_task} if anchor_task is not None else set()
    done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
    for task in (driver_task, relay_task, anchor_task):
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    await network.stop()
    verifier.close()
    block_verifier.shutdown(wait=True, cancel_futures=True)
    for runner in runners:
        await runner.cleanup()
    for task in (driver_task, relay_task, anchor_task):
        if task is not None and task in done and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    if store_failures:
        raise store_failures[0]  # run_node turns it into the fatal exit status
    if config_failures:
        raise config_failures[0]


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_until_signalled(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        stop = asyncio.Event()
        loop = runner.get_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        runner.run(main(stop))


def run_node(home: Path) -> int:
    """Run the node at HOME until SIGINT or SIGTERM. Returns the exit status."""
    if not __debug__:
        fatal(FatalReason.ASSERTIONS_DISABLED, "python -O strips the assertions guarding money")
    loaded = load(home)
    config = loaded.config
    configure_logging(node_id=config.node_id, log_format=config.log_format, level=config.log_level)
    # py_ecc (imported with eth-account) raises the interpreter's recursion limit to 100,000
    # when imported; with it, a deeply nested JSON body overflows the C stack and kills the
    # node (SIGSEGV) instead of raising RecursionError. Every import is done by now.
    sys.setrecursionlimit(RECURSION_LIMIT)
    try:
        with long_lived_state():  # the ledger just loaded is frozen out of the GC's scans
            run_until_signalled(lambda stop: serve(loaded, stop))
    except NodeKeyMismatch as exc:
        fatal(FatalReason.CONFIG, str(exc))
    except StoreFull as exc:
        fatal(FatalReason.STORE_FULL, str(exc))
    except StoreCorrupted as exc:
        fatal(FatalReason.STORE_CORRUPTED, str(exc))
    except StoreError as exc:
        fatal(FatalReason.STORE_ERROR, str(exc))
    finally:
        loaded.store.close()
    return 0
