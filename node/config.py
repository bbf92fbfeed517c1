"""Node configuration: one TOML file, overridden by SOMNET_* environment variables.

Every key lives in a section, and its environment variable is SOMNET_<SECTION>_<KEY>
(for example SOMNET_API_LISTEN=0.0.0.0:8080 overrides [api] listen). The file and the
environment are merged once at start into a frozen `NodeConfig`; any unknown key, wrong
type or impossible value is refused with a message that names the field.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.errors import NodeError

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
    mempool_txs_max: int = 100_000
    block_txs_max: int = 5_000
    empty_block_interval_ms: int = 5_000
    """How often a proposer proposes an empty block when there is no work."""
    timeout_propose_ms: int = 3_000
    timeout_vote_ms: int = 1_000
    store_map_size_bytes: int = 8 * 1024**3
    log_level: str = "INFO"


# Schema: section -> key -> (NodeConfig field, type). One table, used for both the file
# and the environment, so the two can never disagree.
SCHEMA: dict[str, dict[str, tuple[str, type]]] = {
    "node": {
        "id": ("node_id", str),
        "genesis_file": ("genesis_file", Path),
        "key_file": ("key_file", Path),
        "data_dir": ("data_dir", Path),
        "log_level": ("log_level", str),
    },
    "p2p": {
        "listen": ("peer_listen", str),
        "frame_bytes_max": ("frame_bytes_max", int),
        "queue_payloads_max": ("peer_queue_payloads_max", int),
    },
    "api": {"listen": ("api_listen", str)},
    "mempool": {"txs_max": ("mempool_txs_max", int)},
    "consensus": {
        "block_txs_max": ("block_txs_max", int),
        "empty_block_interval_ms": ("empty_block_interval_ms", int),
        "timeout_propose_ms": ("timeout_propose_ms", int),
        "timeout_vote_ms": ("timeout_vote_ms", int),
    },
    "store": {"map_size_bytes": ("store_map_size_bytes", int)},
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


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
            values[name] = _typed(f"{path}: {section}.{key}", value, kind, home)
    for section, table in SCHEMA.items():
        for key, (name, kind) in table.items():
            env_name = f"{ENV_PREFIX}{section}_{key}".upper()
            if env_name in environ:
                values[name] = _from_env(env_name, environ[env_name], kind, home)
    return _validated(path, home, values)


def _typed(where: str, value: object, kind: type, home: Path) -> object:
    if kind is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a non-empty path string")
        return home / value
    if kind is int and (type(value) is not int):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _from_env(name: str, text: str, kind: type, home: Path) -> object:
    if kind is int:
        try:
            return int(text, 10)
        except ValueError as exc:
            raise ConfigError(f"environment {name}: expected an integer, got {text!r}") from exc
    return _typed(f"environment {name}", text, kind, home)


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
        if not entry["url"].startswith(("http://", "https://")):
            raise ConfigError(f"{where}.url: expected http:// or https:// URL")
        peers.append(PeerEntry(peer_id=entry["id"], url=entry["url"]))
    if len({p.peer_id for p in peers}) != len(peers):
        raise ConfigError(f"{path}: peers: duplicate id")
    return tuple(peers)


def _validated(path: Path, home: Path, values: dict[str, Any]) -> NodeConfig:
    for required in ("node_id", "peer_listen", "api_listen"):
        if required not in values:
            section, key = next(
                (s, k) for s, t in SCHEMA.items() for k, (n, _) in t.items() if n == required
            )
            raise ConfigError(f"{path}: missing required key {section}.{key}")
    values.setdefault("genesis_file", home / "genesis.json")
    values.setdefault("key_file", home / "node_key.json")
    values.setdefault("data_dir", home / "data")
    config = NodeConfig(home=home, **values)
    for name in ("peer_listen", "api_listen"):
        _check_host_port(path, name, getattr(config, name))
    positive = (
        "frame_bytes_max",
        "peer_queue_payloads_max",
        "mempool_txs_max",
        "block_txs_max",
        "empty_block_interval_ms",
        "timeout_propose_ms",
        "timeout_vote_ms",
        "store_map_size_bytes",
    )
    for name in positive:
        if getattr(config, name) < 1:
            raise ConfigError(f"{path}: {name} must be >= 1")
    if config.log_level not in LOG_LEVELS:
        raise ConfigError(f"{path}: node.log_level must be one of {', '.join(LOG_LEVELS)}")
    if config.node_id in {p.peer_id for p in config.peers}:
        raise ConfigError(f"{path}: peers: a node cannot peer with itself ({config.node_id})")
    return config


def _check_host_port(path: Path, name: str, value: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{path}: {name} must be host:port with port 1..65535, got {value!r}")
