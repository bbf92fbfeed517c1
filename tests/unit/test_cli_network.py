"""`somnet init` and the CLI's money parsing: files, modes, refusals."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli.api_client import local_api_url
from cli.main import main
from cli.som import parse_som
from node.config import load_config
from node.genesis import load_genesis
from node.keys import load_key_file


def test_init_writes_a_ready_network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "net"
    assert main(["init", "--validators", "4", "--banks", "2", "--out", str(out)]) == 0
    network = json.loads((out / "network.json").read_text())
    assert [n["role"] for n in network] == ["issuer"] + ["validator"] * 3 + ["bank"] * 2
    genesis = load_genesis(out / "genesis.json")
    assert len(genesis.validator_set().validators) == 4
    funded = dict(genesis.issuance)
    for node in network:
        home = out / node["home"]
        key_file = home / "node_key.json"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        config = load_config(home, environ={})
        assert config.node_id == node["id"]
        assert f"http://{config.api_listen}" == node["api_url"]
        participant = next(p for p in genesis.participants if p.participant_id == node["id"])
        assert bytes(load_key_file(key_file).verify_key) == participant.public_key
        assert (node["role"] == "bank") == (funded.get(node["id"], 0) > 0)
    assert main(["init", "--out", str(out)]) == 2  # never overwrites a network
    assert "already initialised" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "tyiyn"), [("12.50", 1250), ("12.5", 1250), ("12", 1200), ("0.01", 1)]
)
def test_som_amounts_become_exact_tyiyn(text: str, tyiyn: int) -> None:
    assert parse_som(text) == tyiyn


@pytest.mark.parametrize("text", ["0", "0.00", "-1", "1.005", "1e3", "nan", "", "1,50", " 1"])
def test_bad_amounts_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="amount"):
        parse_som(text)


@given(st.integers(min_value=1, max_value=10**17 - 1))
def test_any_tyiyn_amount_round_trips_through_its_som_text(tyiyn: int) -> None:
    assert parse_som(f"{tyiyn // 100}.{tyiyn % 100:02d}") == tyiyn


def test_transfer_with_a_bad_amount_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "net"
    main(["init", "--out", str(out)])
    capsys.readouterr()
    code = main(["transfer", "--home", str(out / "bank-1"), "--to", "bank-2", "--amount", "1.234"])
    assert code == 2
    assert "amount '1.234'" in capsys.readouterr().err


@pytest.mark.parametrize("chain_id", ["som/devnet", "som devnet", "-som"])
def test_init_refuses_a_chain_id_that_is_not_an_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], chain_id: str
) -> None:
    out = tmp_path / "net"
    assert main(["init", "--out", str(out), f"--chain-id={chain_id}"]) == 2
    assert "chain_id: expected an id of 1..64 characters" in capsys.readouterr().err
    assert not (out / "genesis.json").exists()


def test_init_compose_writes_a_compose_network(tmp_path: Path) -> None:
    out = tmp_path / "net"
    argv = ["init", "--validators", "4", "--banks", "2", "--out", str(out), "--compose"]
    assert main([*argv, "--base-port", "26700", "--image", "localhost/somnet:x"]) == 0
    genesis = load_genesis(out / "genesis.json")
    compose = (out / "compose.yaml").read_text()
    network = json.loads((out / "network.json").read_text())
    for index, node in enumerate(network):
        node_id = node["id"]
        participant = next(p for p in genesis.participants if p.participant_id == node_id)
        # Peers reach each other by service name, on the image's ports.
        assert participant.peer_address == f"{node_id}:26656"
        config = load_config(out / node_id, environ={})
        assert (config.peer_listen, config.api_listen) == ("0.0.0.0:26656", "0.0.0.0:8080")
        assert config.peers == ()  # the genesis addresses are the compose addresses
        # Only the API is published, on loopback, at the port network.json gives.
        assert node["api_url"] == f"http://127.0.0.1:{26700 + 2 * index + 1}"
        assert f"  {node_id}:\n" in compose
        assert f"      - ./{node_id}:/data\n" in compose
        assert f'      - "127.0.0.1:{26700 + 2 * index + 1}:8080"\n' in compose
    assert compose.count('image: "localhost/somnet:x"') == 6
    assert compose.count("    ports:") == 6 and "26656" not in compose
    assert compose.count("read_only: true") == 6


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("127.0.0.1:9", "http://127.0.0.1:9"),
        ("[::]:8080", "http://[::1]:8080"),
        ("bank-1:8080", "http://bank-1:8080"),
    ],
)
def test_the_cli_reaches_a_wildcard_api_through_loopback(listen: str, url: str) -> None:
    assert local_api_url(listen) == url
