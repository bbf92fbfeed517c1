"""Node configuration: one TOML file, overridden by SOMNET_* environment variables.

Every key lives in a section, and its environment variable is SOMNET_<SECTION>_<KEY>
(for example SOMNET_API_LISTEN=0.0.0.0:8080 overrides [api] listen). The file and the
environment are merged once at start into a frozen `NodeConfig`; any unknown key, wrong
type or impossible value is refused with a message that names the key and where its value
came from (the file or the environment variable).

A value is checked here against the limit it will meet later, so that a node refuses it
at start (exit status 10) instead of crashing or stalling when it first uses it:
- the consensus timeouts by the consensus core's own `ReplicaConfig.validate()`;
- the frame size against the block limits of every node's decoder and of the mempool;
- the block's transaction count against the block decoder's limit;
- the LMDB map size against what LMDB can map;
- the API's connection limits against the descriptors a node may take (and the limit per
  client address against the total), its deadlines against 100 ms and an hour;
- every other integer against 1 and the largest integer TOML can write.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consensus.config import ReplicaConfig
from consensus.errors import ConfigError as ConsensusConfigError
from node.block import BLOCK_SIZE_MAX, CERTIFICATE_SIZE_MAX, HEADER_SIZE_MAX, TXS_MAX
from node.errors import NodeError
from node.ids import ID_RULE, is_id
from node.protocol import SYNC_BLOCKS_MAX
from node.tx import TX_SIZE_MAX

__all__ = ["ConfigError", "NodeConfig", "PeerEntry", "load_config"]

ENV_PREFIX = "SOMNET_"


class ConfigError(NodeError):
    """The node configuration cannot work; the message names the field."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerEntry:
    peer_id: str
    url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    home: Path
    node_id: str
    """Participant id of this node in genesis."""
    genesis_file: Path
    key_file: Path
    data_dir: Path
    peer_listen: str
    """host:port of the peer WebSocket listener."""
    api_listen: str
    """host:port of the bank API."""
    peers: tuple[PeerEntry, ...] = field(default=())
    frame_bytes_max: int = 4 * 1024 * 1024
    peer_queue_payloads_max: int = 10_000
    peer_allow_only_genesis_addresses: bool = False
    """Accept peer connections only from the hosts of genesis peer addresses (and of
    [[peers]] URLs); any other source address is refused before the WebSocket upgrade."""
    mempool_txs_max: int = 100_000
    block_txs_max: int = 5_000
    empty_block_interval_ms: int = 5_000
    """How often a proposer proposes an empty block when there is no work."""
    timeout_propose_ms: int = 3_000
    timeout_vote_ms: int = 1_000
    store_map_size_bytes: int = 8 * 1024**3
    log_level: str = "INFO"
    log_format: str = "logfmt"
    """One event per line: "logfmt" (key=value) or "json" (one object per line)."""
    metrics_listen: str = ""
    """host:port of the Prometheus /metrics listener, apart from the API; "" serves none."""
    api_connections_max: int = 512
    """Open API connections in all; a new one beyond gets 503 TOO_MANY_CONNECTIONS."""
    api_connections_per_address_max: int = 256
    """Open API connections from one client address (an IPv6 client by its /64)."""
    api_header_timeout_ms: int = 10_000
    """Time for a complete request head, from the connection's opening or its last
    answer: a slow or idle connection is closed after it."""
    api_body_timeout_ms: int = 10_000
    """Time for a complete request body once its head arrived (408 REQUEST_TIMEOUT)."""
    api_body_bytes_max: int = 4 * 1024 * 1024
    """The largest request body; a larger one gets 413 TOO_LARGE."""
    api_batch_txs_max: int = 1_000
    """Transactions in one batch submission."""
    api_page_items_max: int = 1_000
    """The most items one page (a statement) may ask for."""
    api_signature_age_s_max: int = 60
    """How old a request's signature may be (node/api_auth.py)."""
    api_requests_per_s_max: int = 500
    """Requests a second per participant; beyond, 429 RATE_LIMITED."""
    api_waits_max: int = 16
    """Long polls and event streams one participant may hold open; beyond, 429."""
    api_supervisor_keys: str = ""
    """Supervisors who read every account: "id:<64 hex Ed25519 public key>,..."."""
    api_tls_cert_file: Path | None = None
    """PEM certificate chain: with api_tls_key_file, the API speaks HTTPS only."""
    api_tls_key_file: Path | None = None
    anchor_enabled: bool = False
    """Whether this node anchors finalized block hashes on the EVM chain (node/anchor.py);
    one node of a network does, by default the central bank's."""
    anchor_rpc_url: str = ""
    """JSON-RPC endpoint of the EVM chain (http:// or https://)."""
    anchor_evm_chain_id: int = 97
    """The EVM chain id the endpoint must report (BNB Smart Chain 56, its testnet 97)."""
    anchor_every_blocks: int = 100
    """Anchor every height that is a multiple of this."""
    anchor_key_file: Path | None = None
    """The secp256k1 key that signs anchors (0600); default HOME/anchor_key.json."""
    anchor_fee_per_gas_max_wei: int = 100 * 10**9
    """The highest max-fee-per-gas an anchor (or its replacement) may offer."""
    anchor_gas_max: int = 200_000
    """The highest gas limit an anchor may carry, whatever eth_estimateGas says."""
    anchor_rpc_timeout_ms: int = 5_000
    """Deadline of one JSON-RPC call."""
    anchor_poll_interval_ms: int = 1_000
    """How often the anchoring task looks at the EVM chain and the settled height."""
    anchor_replace_after_ms: int = 30_000
    """An anchor transaction not included after this is replaced: same nonce, higher fee."""

    @property
    def block_bytes_max(self) -> int:
        """Transaction bytes in a proposed block, and the largest block accepted: half a
        frame, so that a proposal, or a sync answer with a block, fits in one frame."""
        return self.frame_bytes_max // 2

    @property
    def sync_bytes_max(self) -> int:
        """Block and certificate bytes in one sync answer, and the most a peer's sync
        budget holds: the largest block with the largest certificate. A full block with
        its certificate is more than block_bytes_max, and an answer smaller than that
        would never serve it, so no node behind it could catch up."""
        return self.block_bytes_max + CERTIFICATE_SIZE_MAX

    def replica_config(self, chain_id: str) -> ReplicaConfig:
        """The consensus core's configuration: this node's settings per REPLICA_FIELDS."""
        fields = {f: getattr(self, name) for name, names in REPLICA_FIELDS.items() for f in names}
        return ReplicaConfig(chain_id=chain_id, **fields)


# Schema: section -> key -> (NodeConfig field, type). One table, used for both the file
# and the environment, so the two can never disagree.
SCHEMA: dict[str, dict[str, tuple[str, type]]] = {
    "node": {
        "id": ("node_id", str),
        "genesis_file": ("genesis_file", Path),
        "key_file": ("key_file", Path),
        "data_dir": ("data_dir", Path),
        "log_level": ("log_level", str),
        "log_format": ("log_format", str),
    },
    "p2p": {
        "listen": ("peer_listen", str),
        "frame_bytes_max": ("frame_bytes_max", int),
        "queue_payloads_max": ("peer_queue_payloads_max", int),
        "allow_only_genesis_addresses": ("peer_allow_only_genesis_addresses", bool),
    },
    "api": {
        "listen": ("api_listen", str),
        "connections_max": ("api_connections_max", int),
        "connections_per_address_max": ("api_connections_per_address_max", int),
        "header_timeout_ms": ("api_header_timeout_ms", int),
        "body_timeout_ms": ("api_body_timeout_ms", int),
        "body_bytes_max": ("api_body_bytes_max", int),
        "batch_txs_max": ("api_batch_txs_max", int),
        "page_items_max": ("api_page_items_max", int),
        "signature_age_s_max": ("api_signature_age_s_max", int),
        "requests_per_s_max": ("api_requests_per_s_max", int),
        "waits_max": ("api_waits_max", int),
        "supervisor_keys": ("api_supervisor_keys", str),
        "tls_cert_file": ("api_tls_cert_file", Path),
        "tls_key_file": ("api_tls_key_file", Path),
    },
    "metrics": {"listen": ("metrics_listen", str)},
    "mempool": {"txs_max": ("mempool_txs_max", int)},
    "consensus": {
        "block_txs_max": ("block_txs_max", int),
        "empty_block_interval_ms": ("empty_block_interval_ms", int),
        "timeout_propose_ms": ("timeout_propose_ms", int),
        "timeout_vote_ms": ("timeout_vote_ms", int),
    },
    "store": {"map_size_bytes": ("store_map_size_bytes", int)},
    "anchor": {
        "enabled": ("anchor_enabled", bool),
        "rpc_url": ("anchor_rpc_url", str),
        "evm_chain_id": ("anchor_evm_chain_id", int),
        "every_blocks": ("anchor_every_blocks", int),
        "key_file": ("anchor_key_file", Path),
        "fee_per_gas_max_wei": ("anchor_fee_per_gas_max_wei", int),
        "gas_max": ("anchor_gas_max", int),
        "rpc_timeout_ms": ("anchor_rpc_timeout_ms", int),
        "poll_interval_ms": ("anchor_poll_interval_ms", int),
        "replace_after_ms": ("anchor_replace_after_ms", int),
    },
}
KEYS = {name: f"{section}.{key}" for section, t in SCHEMA.items() for key, (name, _) in t.items()}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("logfmt", "json")

# The settings that configure the consensus core, and the ReplicaConfig fields each sets.
# `NodeConfig.replica_config` builds from this table and `load_config` checks through it.
REPLICA_FIELDS: dict[str, tuple[str, ...]] = {
    "timeout_propose_ms": ("timeout_propose_ms",),
    "timeout_vote_ms": ("timeout_prevote_ms", "timeout_precommit_ms"),
}
# The chain id comes from genesis, which checks it; a valid one stands in for it while the
# node's settings are checked, before genesis is read.
CHAIN_ID_FOR_CHECKS = "somnet-config-check"

INT_MAX = 2**63 - 1  # the largest integer TOML can write; the environment could write more
# A block must hold the largest transaction the mempool admits, with a header and the
# previous block's certificate: a proposer takes transactions in arrival order and stops
# at the first that does not fit, so a smaller block would leave it first in line for ever.
BLOCK_BYTES_MIN = TX_SIZE_MAX + HEADER_SIZE_MAX + CERTIFICATE_SIZE_MAX + 64
# Half a frame is the block budget (NodeConfig.block_bytes_max), and every node's decoder
# refuses a block over BLOCK_SIZE_MAX: a proposer allowed more would propose blocks that
# no validator accepts.
FRAME_BYTES_MIN = 2 * BLOCK_BYTES_MIN
FRAME_BYTES_MAX = 2 * BLOCK_SIZE_MAX
# A sync answer (sync_bytes_max of blocks and certificates, framed per pair) must fit in
# one frame with the frame's own header and seal, whatever the frame size.
SYNC_ANSWER_OVERHEAD_BYTES = 16 * SYNC_BLOCKS_MAX + 1024
assert FRAME_BYTES_MIN // 2 + CERTIFICATE_SIZE_MAX + SYNC_ANSWER_OVERHEAD_BYTES <= FRAME_BYTES_MIN
# Room for an empty store and a few of the largest blocks with their results; at the top,
# x86-64 gives a process 128 TiB of address space and lmdb.open overflows at 2**64.
MAP_SIZE_BYTES_MIN = 4 * BLOCK_SIZE_MAX
MAP_SIZE_BYTES_MAX = 2**44
# API connections: each is a descriptor, and node.descriptors raises the process's limit to
# at most 65,536, which must also hold the peers and the rest of the node.
API_CONNECTIONS_MAX = 60_000
# An API deadline under 100 ms would cut off honest clients on a busy network; one over an
# hour would let a slow client hold a connection as good as for ever.
API_TIMEOUT_MS_MIN = 100
API_TIMEOUT_MS_MAX = 3_600_000
# Inclusive bounds of the integer settings; the consensus timeouts are judged by the core.
INT_BOUNDS: dict[str, tuple[int, int]] = {
    "frame_bytes_max": (FRAME_BYTES_MIN, FRAME_BYTES_MAX),
    "peer_queue_payloads_max": (1, INT_MAX),
    "mempool_txs_max": (1, INT_MAX),
    "block_txs_max": (1, TXS_MAX),
    "empty_block_interval_ms": (1, INT_MAX),
    "store_map_size_bytes": (MAP_SIZE_BYTES_MIN, MAP_SIZE_BYTES_MAX),
    "api_connections_max": (1, API_CONNECTIONS_MAX),
    "api_connections_per_address_max": (1, API_CONNECTIONS_MAX),
    "api_header_timeout_ms": (API_TIMEOUT_MS_MIN, API_TIMEOUT_MS_MAX),
    "api_body_timeout_ms": (API_TIMEOUT_MS_MIN, API_TIMEOUT_MS_MAX),
    # A batch or a body smaller than one transaction could never carry one.
    "api_body_bytes_max": (TX_SIZE_MAX * 2 + 1024, 1024**3),
    "api_batch_txs_max": (1, TXS_MAX),
    "api_page_items_max": (1, 100_000),
    "api_signature_age_s_max": (5, 3_600),
    "api_requests_per_s_max": (1, 1_000_000),
    "api_waits_max": (1, API_CONNECTIONS_MAX),
    "anchor_evm_chain_id": (1, 2**53 - 1),  # EIP-2294's bound on chain ids
    "anchor_every_blocks": (1, 1_000_000),
    # 21,000 is the least any EVM transaction costs; more than 10 million is no anchor.
    "anchor_gas_max": (21_000, 10_000_000),
    "anchor_fee_per_gas_max_wei": (1, 10**15),  # 1,000,000 gwei: a typo, not a fee
    "anchor_rpc_timeout_ms": (100, 600_000),
    "anchor_poll_interval_ms": (10, 600_000),
    "anchor_replace_after_ms": (1_000, 86_400_000),
}
assert set(INT_BOUNDS) | set(REPLICA_FIELDS) == {
    name for table in SCHEMA.values() for name, kind in table.values() if kind is int
}
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(NodeConfig)}
assert all(low <= _DEFAULTS[name] <= high for name, (low, high) in INT_BOUNDS.items())


def load_config(home: Path, environ: Mapping[str, str] | None = None) -> NodeConfig:
    """Read HOME/node.toml, apply SOMNET_* overrides, validate.

    Raises:
        ConfigError: naming the file, section and key at fault.
    """
    environ = os.environ if environ is None else environ
    path = home / "node.toml"
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}  # field -> where its value came from, for messages
    for section, table in raw.items():
        if section == "peers":
            values["peers"] = _peers(path, table)
            continue
        if section not in SCHEMA or not isinstance(table, dict):
            raise ConfigError(f"{path}: unknown section [{section}]")
        for key, value in table.items():
            if key not in SCHEMA[section]:
                raise ConfigError(f"{path}: unknown key {section}.{key}")
            name, kind = SCHEMA[section][key]
            sources[name] = f"{path}: {section}.{key}"
            values[name] = _typed(sources[name], value, kind, home)
    known = {
        f"{ENV_PREFIX}{section}_{key}".upper() for section in SCHEMA for key in SCHEMA[section]
    }
    unknown = sorted(n for n in environ if n.startswith(ENV_PREFIX) and n not in known)
    if unknown:  # a mistyped override must not be silently ignored
        raise ConfigError(f"environment {unknown[0]}: not a setting (see node.example.toml)")
    for section, table in SCHEMA.items():
        for key, (name, kind) in table.items():
            env_name = f"{ENV_PREFIX}{section}_{key}".upper()
            if env_name in environ:
                sources[name] = f"environment {env_name} ({section}.{key})"
                values[name] = _from_env(sources[name], environ[env_name], kind, home)
    return _validated(path, home, values, sources)


def _typed(where: str, value: object, kind: type, home: Path) -> object:
    if kind is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a non-empty path string")
        return home / value
    if kind is int and (type(value) is not int):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if kind is bool and type(value) is not bool:
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _from_env(where: str, text: str, kind: type, home: Path) -> object:
    if kind is int:
        try:
            return int(text, 10)
        except ValueError as exc:
            raise ConfigError(f"{where}: expected an integer, got {text!r}") from exc
    if kind is bool:
        if text not in ("true", "false"):
            raise ConfigError(f"{where}: expected true or false, got {text!r}")
        return text == "true"
    return _typed(where, text, kind, home)


def _peers(path: Path, table: object) -> tuple[PeerEntry, ...]:
    if not isinstance(table, list):
        raise ConfigError(f"{path}: [[peers]] must be an array of tables")
    peers = []
    for index, entry in enumerate(table):
        where = f"{path}: peers[{index}]"
        if not isinstance(entry, dict) or set(entry) != {"id", "url"}:
            raise ConfigError(f"{where}: expected exactly the keys id and url")
        if not isinstance(entry["id"], str) or not isinstance(entry["url"], str):
            raise ConfigError(f"{where}: id and url must be strings")
        if not is_id(entry["id"]):
            raise ConfigError(f"{where}.id: expected an id of {ID_RULE}, got {entry['id']!r}")
        if not entry["url"].startswith(("http://", "https://")):
            raise ConfigError(f"{where}.url: expected http:// or https:// URL")
        peers.append(PeerEntry(peer_id=entry["id"], url=entry["url"]))
    if len({p.peer_id for p in peers}) != len(peers):
        raise ConfigError(f"{path}: peers: duplicate id")
    return tuple(peers)


def _validated(
    path: Path, home: Path, values: dict[str, Any], sources: dict[str, str]
) -> NodeConfig:
    for required in ("node_id", "peer_listen", "api_listen"):
        if required not in values:
            raise ConfigError(f"{path}: missing required key {KEYS[required]}")
    values.setdefault("genesis_file", home / "genesis.json")
    values.setdefault("key_file", home / "node_key.json")
    values.setdefault("data_dir", home / "data")
    values.setdefault("anchor_key_file", home / "anchor_key.json")
    config = NodeConfig(home=home, **values)

    def where(name: str) -> str:
        return sources.get(name, f"{path}: {KEYS[name]} (default)")

    if not is_id(config.node_id):
        raise ConfigError(
            f"{where('node_id')}: expected an id of {ID_RULE}, got {config.node_id!r}"
        )
    for name in ("peer_listen", "api_listen"):
        _check_host_port(where(name), getattr(config, name))
    _check_metrics_listen(config, where)
    for name, (low, high) in INT_BOUNDS.items():
        value = getattr(config, name)
        if not low <= value <= high:
            bounds = f">= {low}" if high == INT_MAX else f"in {low}..{high}"
            raise ConfigError(f"{where(name)} must be {bounds}, got {value}")
    if config.api_connections_per_address_max > config.api_connections_max:
        raise ConfigError(
            f"{where('api_connections_per_address_max')} must be at most api.connections_max "
            f"({config.api_connections_max}), got {config.api_connections_per_address_max}"
        )
    _check_replica_settings(config, where)
    if config.anchor_enabled and not config.anchor_rpc_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"{where('anchor_rpc_url')}: anchoring is enabled, so an http:// or https:// "
            f"JSON-RPC URL is required, got {config.anchor_rpc_url!r}"
        )
    if config.log_level not in LOG_LEVELS:
        levels = ", ".join(LOG_LEVELS)
        raise ConfigError(f"{where('log_level')} must be one of {levels}, got {config.log_level!r}")
    if (config.api_tls_cert_file is None) != (config.api_tls_key_file is None):
        raise ConfigError(f"{path}: api.tls_cert_file and api.tls_key_file go together")
    supervisor_keys(config, where("api_supervisor_keys"))
    if config.log_format not in LOG_FORMATS:
        formats = ", ".join(LOG_FORMATS)
        raise ConfigError(
            f"{where('log_format')} must be one of {formats}, got {config.log_format!r}"
        )
    if config.node_id in {p.peer_id for p in config.peers}:
        raise ConfigError(f"{path}: peers: a node cannot peer with itself ({config.node_id})")
    return config


def supervisor_keys(config: NodeConfig, where: str = "api.supervisor_keys") -> dict[str, bytes]:
    """The configured supervisors' public keys by id.

    Raises:
        ConfigError: an entry is not id:<64 hex>, or an id repeats.
    """
    keys: dict[str, bytes] = {}
    for entry in filter(None, (e.strip() for e in config.api_supervisor_keys.split(","))):
        supervisor_id, _, key_hex = entry.partition(":")
        try:
            key = bytes.fromhex(key_hex)
        except ValueError:
            key = b""
        if not is_id(supervisor_id) or len(key) != 32 or supervisor_id in keys:
            raise ConfigError(f"{where}: expected distinct id:<64 hex digits>, got {entry!r}")
        keys[supervisor_id] = key
    return keys


def _check_replica_settings(config: NodeConfig, where: Callable[[str], str]) -> None:
    """Let the consensus core's own ReplicaConfig.validate() judge the settings it gets, so
    the node never accepts a value that the core refuses when the replica is built. Each
    setting alone first (over the core's defaults), so that a refusal names its key."""
    defaults = ReplicaConfig.default(CHAIN_ID_FOR_CHECKS)
    for name, fields in REPLICA_FIELDS.items():
        value = getattr(config, name)
        try:
            dataclasses.replace(defaults, **dict.fromkeys(fields, value)).validate()
        except ConsensusConfigError as exc:
            message = f"{where(name)} = {value}: refused by the consensus core: {exc}"
            raise ConfigError(message) from exc
    try:
        config.replica_config(CHAIN_ID_FOR_CHECKS).validate()
    except ConsensusConfigError as exc:
        keys = "; ".join(where(name) for name in REPLICA_FIELDS)
        raise ConfigError(f"{keys}: refused together by the consensus core: {exc}") from exc


def _check_metrics_listen(config: NodeConfig, where: Callable[[str], str]) -> None:
    """The metrics listener is optional, and never shares a port with the API or the peers:
    anyone who may scrape metrics must not thereby reach the bank API."""
    if not config.metrics_listen:
        return
    _check_host_port(where("metrics_listen"), config.metrics_listen)
    for name in ("peer_listen", "api_listen"):
        if config.metrics_listen == getattr(config, name):
            raise ConfigError(
                f"{where('metrics_listen')} must differ from {KEYS[name]}, "
                f"both are {config.metrics_listen!r}"
            )


def _check_host_port(where: str, value: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where} must be host:port with port 1..65535, got {value!r}")
