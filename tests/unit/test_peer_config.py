"""The peer port's settings in node.toml: `[p2p] allow_only_genesis_addresses`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from node.config import ConfigError, load_config

MINIMAL = """
[node]
id = "bank-a"
[p2p]
listen = "127.0.0.1:26656"
[api]
listen = "127.0.0.1:8080"
"""


def home_with(tmp_path: Path, text: str) -> Path:
    (tmp_path / "node.toml").write_text(text)
    return tmp_path


def test_genesis_addresses_only_is_off_by_default(tmp_path: Path) -> None:
    assert not load_config(
        home_with(tmp_path, MINIMAL), environ={}
    ).peer_allow_only_genesis_addresses


@pytest.mark.parametrize(
    ("line", "environ", "expected"),
    [
        ("allow_only_genesis_addresses = true", {}, True),
        ("allow_only_genesis_addresses = false", {}, False),
        ("", {"SOMNET_P2P_ALLOW_ONLY_GENESIS_ADDRESSES": "true"}, True),
        ("allow_only_genesis_addresses = true",
         {"SOMNET_P2P_ALLOW_ONLY_GENESIS_ADDRESSES": "false"}, False),
    ],
)  # fmt: skip
def test_genesis_addresses_only_from_file_and_environment(
    tmp_path: Path, line: str, environ: dict[str, str], expected: bool
) -> None:
    text = MINIMAL.replace('listen = "127.0.0.1:26656"', f'listen = "127.0.0.1:26656"\n{line}')
    config = load_config(home_with(tmp_path, text), environ=environ)
    assert config.peer_allow_only_genesis_addresses is expected


@pytest.mark.parametrize(
    ("line", "environ", "message"),
    [
        ("allow_only_genesis_addresses = 1", {}, "p2p.allow_only_genesis_addresses: expected"),
        ('allow_only_genesis_addresses = "yes"', {}, "p2p.allow_only_genesis_addresses"),
        ("", {"SOMNET_P2P_ALLOW_ONLY_GENESIS_ADDRESSES": "1"},
         "SOMNET_P2P_ALLOW_ONLY_GENESIS_ADDRESSES (p2p.allow_only_genesis_addresses): expected"),
    ],
)  # fmt: skip
def test_a_value_that_is_not_a_boolean_is_refused(
    tmp_path: Path, line: str, environ: dict[str, str], message: str
) -> None:
    text = MINIMAL.replace('listen = "127.0.0.1:26656"', f'listen = "127.0.0.1:26656"\n{line}')
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(home_with(tmp_path, text), environ=environ)
