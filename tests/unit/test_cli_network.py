"""`somnet init` and the CLI's money parsing: files, modes, refusals."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli.client import parse_som
from cli.main import main
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
