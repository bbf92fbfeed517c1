"""Node configuration: TOML, SOMNET_* overrides, refusals that name the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from node.config import SCHEMA, ConfigError, load_config

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
        (MINIMAL.replace('"127.0.0.1:8080"', '"localhost"'), {}, "api_listen must be host:port"),
        (MINIMAL + "[mempool]\ntxs_max = 1.5\n", {}, "mempool.txs_max: expected an integer"),
        (MINIMAL + "[mempool]\ntxs_max = 0\n", {}, "mempool_txs_max must be >= 1"),
        (MINIMAL, {"SOMNET_MEMPOOL_TXS_MAX": "many"}, "SOMNET_MEMPOOL_TXS_MAX"),
        (MINIMAL.replace("[api]\nlisten", "[api]\n#"), {}, "missing required key api.listen"),
        (MINIMAL.replace('"http://', '"ftp://'), {}, "peers[0].url"),
        (MINIMAL.replace('id = "cb"', 'id = "bank-a"'), {}, "cannot peer with itself"),
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
            assert re.search(rf"^{key} = ", text, re.MULTILINE), f"{section}.{key} undocumented"
