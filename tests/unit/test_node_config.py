"""Node configuration: TOML, SOMNET_* overrides, refusals that name the field."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from consensus.config import ReplicaConfig
from consensus.errors import ConfigError as ConsensusConfigError
from node.block import BLOCK_SIZE_MAX, CERTIFICATE_SIZE_MAX
from node.config import FRAME_BYTES_MAX, FRAME_BYTES_MIN, SCHEMA, ConfigError, load_config
from node.protocol import SYNC_BLOCKS_MAX, SyncBlocks, encode_payload

MINIMAL = """
[node]
id = "bank-a"
[p2p]
listen = "127.0.0.1:26656"
[api]
listen = "127.0.0.1:8080"
[[peers]]
id = "cb"
url = "http://127.0.0.1:26657"
"""


def write(home: Path, text: str) -> Path:
    (home / "node.toml").write_text(text)
    return home


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), environ={})
    assert config.node_id == "bank-a"
    assert config.data_dir == tmp_path / "data"
    assert config.genesis_file == tmp_path / "genesis.json"
    assert [p.peer_id for p in config.peers] == ["cb"]
    assert config.block_txs_max == 5_000


def test_environment_overrides_file(tmp_path: Path) -> None:
    environ = {"SOMNET_API_LISTEN": "0.0.0.0:9000", "SOMNET_CONSENSUS_BLOCK_TXS_MAX": "77"}
    config = load_config(write(tmp_path, MINIMAL), environ=environ)
    assert config.api_listen == "0.0.0.0:9000"
    assert config.block_txs_max == 77


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        (MINIMAL + "[api2]\nx = 1\n", {}, "unknown section [api2]"),
        (MINIMAL.replace('id = "bank-a"', 'id = "bank-a"\ncolour = 1'), {}, "node.colour"),
        (MINIMAL.replace('"127.0.0.1:8080"', '"localhost"'), {}, "api.listen must be host:port"),
        (MINIMAL + "[mempool]\ntxs_max = 1.5\n", {}, "mempool.txs_max: expected an integer"),
        (MINIMAL + "[mempool]\ntxs_max = 0\n", {}, "mempool.txs_max must be >= 1"),
        (MINIMAL, {"SOMNET_MEMPOOL_TXS_MAX": "many"}, "SOMNET_MEMPOOL_TXS_MAX"),
        (MINIMAL.replace("[api]\nlisten", "[api]\n#"), {}, "missing required key api.listen"),
        (MINIMAL.replace('"http://', '"ftp://'), {}, "peers[0].url"),
        (MINIMAL.replace('id = "cb"', 'id = "bank-a"'), {}, "cannot peer with itself"),
        (MINIMAL, {"SOMNET_NODE_ID": "bank-a/payroll"}, "SOMNET_NODE_ID (node.id): expected an id"),
        (MINIMAL.replace('id = "cb"', 'id = "c/b"'), {}, "peers[0].id: expected an id"),
        ("[node\n", {}, "not valid TOML"),
    ],
)
def test_bad_config_is_refused_naming_the_field(
    tmp_path: Path, text: str, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(write(tmp_path, text), environ=environ)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("node.toml: file not found")):
        load_config(tmp_path, environ={})


def test_the_example_config_is_valid_and_documents_every_key(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "deploy" / "node.example.toml"
    (tmp_path / "node.toml").write_text(example.read_text())
    config = load_config(tmp_path, environ={})
    assert config.node_id == "bank-1"
    text = example.read_text()
    for section, keys in SCHEMA.items():
        assert f"[{section}]" in text
        for key in keys:
            # An optional file (api.tls_*) is documented commented out: no default exists.
            pattern = rf"^(# )?{key} = "
            assert re.search(pattern, text, re.MULTILINE), f"{section}.{key} undocumented"


# Settings that pass the old ">= 1" check but fail later: in the consensus core, in a block
# decoder of every other node, or in LMDB. Each must be refused at load, naming its key.
@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        (MINIMAL + "[consensus]\ntimeout_propose_ms = 70000\n", {}, "consensus.timeout_propose_ms"),
        (MINIMAL + "[consensus]\ntimeout_vote_ms = 60001\n", {}, "consensus.timeout_vote_ms"),
        (MINIMAL + "[consensus]\ntimeout_vote_ms = 0\n", {}, "consensus.timeout_vote_ms"),
        (MINIMAL, {"SOMNET_CONSENSUS_TIMEOUT_PROPOSE_MS": "70000"}, "consensus.timeout_propose_ms"),
        (MINIMAL, {"SOMNET_CONSENSUS_TIMEOUT_PROPOSE_MS": "70000"}, "SOMNET_CONSENSUS_TIMEOUT_PRO"),
        (MINIMAL + "[consensus]\nblock_txs_max = 65537\n", {}, "consensus.block_txs_max"),
        (MINIMAL, {"SOMNET_P2P_FRAME_BYTES_MAX": "1024"}, "p2p.frame_bytes_max"),
        (MINIMAL, {"SOMNET_P2P_FRAME_BYTES_MAX": str(64 * 1024 * 1024)}, "p2p.frame_bytes_max"),
        (MINIMAL + "[store]\nmap_size_bytes = 4096\n", {}, "store.map_size_bytes"),
        (MINIMAL, {"SOMNET_STORE_MAP_SIZE_BYTES": str(2**64)}, "store.map_size_bytes"),
        (MINIMAL, {"SOMNET_NODE_LOG_LEVEL": "info"}, "SOMNET_NODE_LOG_LEVEL"),
        (MINIMAL, {"SOMNET_NODE_LOG_FORMAT": "text"}, "SOMNET_NODE_LOG_FORMAT"),
        (MINIMAL, {"SOMNET_METRICS_LISTEN": "9100"}, "SOMNET_METRICS_LISTEN"),
        (MINIMAL, {"SOMNET_METRICS_LISTEN": "127.0.0.1:8080"}, "must differ from api.listen"),
    ],
)  # fmt: skip
def test_a_value_that_would_fail_later_is_refused_at_load_naming_the_key(
    tmp_path: Path, text: str, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(write(tmp_path, text), environ=environ)


@pytest.mark.parametrize("key", ["timeout_propose_ms", "timeout_vote_ms"])
def test_the_node_accepts_a_timeout_exactly_when_the_consensus_core_does(
    tmp_path: Path, key: str
) -> None:
    """One source of truth: the core's own ReplicaConfig.validate() draws the line."""
    core_max = ReplicaConfig.default("x").timeout_ms_max
    write(tmp_path, MINIMAL)
    for value in (-1, 0, 1, core_max - 1, core_max, core_max + 1, 10**30):
        environ = {f"SOMNET_CONSENSUS_{key.upper()}": str(value)}
        core_fields = {
            "timeout_propose_ms": ("timeout_propose_ms",),
            "timeout_vote_ms": ("timeout_prevote_ms", "timeout_precommit_ms"),
        }[key]
        core_config = dataclasses.replace(
            ReplicaConfig.default("x"), **dict.fromkeys(core_fields, value)
        )
        try:
            core_config.validate()
            core_accepts = True
        except ConsensusConfigError:
            core_accepts = False
        try:
            config = load_config(tmp_path, environ=environ)
            node_accepts = True
        except ConfigError as exc:
            assert f"consensus.{key}" in str(exc)
            node_accepts = False
        assert node_accepts == core_accepts, value
        if node_accepts:
            config.replica_config("som-test").validate()  # what build_replica will run


def test_the_largest_frame_still_gives_blocks_every_node_can_decode(tmp_path: Path) -> None:
    environ = {"SOMNET_P2P_FRAME_BYTES_MAX": str(2 * BLOCK_SIZE_MAX)}
    config = load_config(write(tmp_path, MINIMAL), environ=environ)
    assert config.block_bytes_max == BLOCK_SIZE_MAX
    environ = {"SOMNET_P2P_FRAME_BYTES_MAX": str(2 * BLOCK_SIZE_MAX + 2)}
    with pytest.raises(ConfigError, match=re.escape("p2p.frame_bytes_max")):
        load_config(tmp_path, environ=environ)


def test_a_mistyped_environment_override_is_refused_not_ignored(tmp_path: Path) -> None:
    """Found in issue 8: a mistyped override (SOMNET_P2P_ALLOW_ONLY_GENESIS_ADRESSES, one D)
    was silently ignored, and the node ran without the protection asked for."""
    with pytest.raises(ConfigError, match="SOMNET_API_LISTN: not a setting"):
        load_config(write(tmp_path, MINIMAL), {"SOMNET_API_LISTN": "0.0.0.0:1"})


@pytest.mark.parametrize("frame_bytes_max", [FRAME_BYTES_MIN, 4 * 1024 * 1024, FRAME_BYTES_MAX])
def test_every_block_a_node_accepts_can_be_synced_within_a_frame(
    tmp_path: Path, frame_bytes_max: int
) -> None:
    """A block filled to block_bytes_max, with its certificate, was more than one sync
    answer may hold (sync_bytes_max was block_bytes_max), so no node ever served it and a
    node behind it stopped there (tests/integration/test_hostile_peer.py, finding 1)."""
    environ = {"SOMNET_P2P_FRAME_BYTES_MAX": str(frame_bytes_max)}
    config = load_config(write(tmp_path, MINIMAL), environ=environ)
    assert config.sync_bytes_max >= config.block_bytes_max + CERTIFICATE_SIZE_MAX
    # The largest answer: sync_bytes_max of blocks in as many pairs as a request may ask.
    pairs_count = SYNC_BLOCKS_MAX
    pair_bytes = config.sync_bytes_max // pairs_count
    answer = SyncBlocks(blocks=((bytes(pair_bytes - 100), bytes(100)),) * pairs_count)
    assert len(encode_payload(answer)) + 64 <= config.frame_bytes_max  # batch header, seal
    largest = SyncBlocks(blocks=((bytes(config.block_bytes_max), bytes(CERTIFICATE_SIZE_MAX)),))
    assert len(encode_payload(largest)) + 64 <= config.frame_bytes_max


def test_metrics_are_off_by_default_and_served_at_their_own_address(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    assert load_config(tmp_path, environ={}).metrics_listen == ""
    environ = {"SOMNET_METRICS_LISTEN": "127.0.0.1:9100", "SOMNET_NODE_LOG_FORMAT": "json"}
    config = load_config(tmp_path, environ=environ)
    assert config.metrics_listen == "127.0.0.1:9100"
    assert config.log_format == "json"
