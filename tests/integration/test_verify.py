"""`somnet verify`, the installed command: a proof of a real certified chain checked
offline against the genesis file (exit 0), a tampered proof (exit 1, with its code), and
files it cannot read (exit 2); then a proof fetched over HTTP from real node processes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.inclusion import ProofVerified, build_proof, verify
from node.ledger import Ledger
from node.store import Store
from node.tx import decode_tx
from tests.integration.network import Network, dump_logs
from tests.unit.ledger_support import CHAIN_ID, Chain, genesis_doc, make_genesis, transfer

START = [("bank-e", 10_000), ("bank-f", 10_000)]
SOMNET = Path(sys.executable).parent / "somnet"  # the installed command, not the working copy
PAID = transfer("bank-e", "bank-e", "bank-f", 7)


def somnet_verify(proof: Path, genesis: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SOMNET), "verify", str(proof), "--genesis", str(genesis), *flags],
        cwd=proof.parent, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def flip_hex(hex_text: str, index: int) -> str:
    data = bytearray(bytes.fromhex(hex_text))
    data[index] ^= 0x01
    return data.hex()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(proof.json, genesis.json) of a transfer settled at height 2 of a real chain."""
    directory = tmp_path_factory.mktemp("verify")
    genesis = directory / "genesis.json"
    genesis.write_text(json.dumps(genesis_doc(START)))
    chain = Chain(Ledger(make_genesis(START)))
    with Store.open(directory / "data", chain_id=CHAIN_ID, map_size_bytes=1 << 24) as store:
        for txs in ([], [transfer("bank-f", "bank-f", "bank-e", 3), PAID], []):
            store.commit_block(chain.settle(txs))
        proof = build_proof(store, CHAIN_ID, decode_tx(PAID, CHAIN_ID).tx_hash)
    assert proof is not None
    (directory / "proof.json").write_bytes(proof.encode())
    yield directory / "proof.json", genesis


def tampered(proof: Path, change: dict[str, Any]) -> Path:
    document = json.loads(proof.read_text())
    copy = proof.parent / f"tampered-{len(list(proof.parent.glob('tampered-*')))}.json"
    copy.write_text(json.dumps(document | change))
    return copy


def test_a_valid_proof_prints_its_summary_and_exits_0(files: tuple[Path, Path]) -> None:
    proof, genesis = files
    document = json.loads(proof.read_text())
    done = somnet_verify(proof, genesis)
    assert done.returncode == 0, done.stderr
    assert document["tx_hash"] in done.stdout
    assert "height 2, index 1" in done.stdout
    assert "nbkr (1), val-b (1), val-c (1)" in done.stdout
    assert "3 of 4" in done.stdout
    done = somnet_verify(proof, genesis, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["valid"] is True
    assert (report["tx_hash"], report["height"]) == (document["tx_hash"], 2)
    assert (report["signed_power"], report["total_power"]) == (3, 4)
    assert report["tx"]["kind"] == "transfer"
    assert report["tx"]["amount"] == 7


def test_an_invalid_proof_names_its_code_and_exits_1(files: tuple[Path, Path]) -> None:
    proof, genesis = files
    document = json.loads(proof.read_text())
    cases = [
        ({"path": [flip_hex(document["path"][0], 0), *document["path"][1:]]}, "TX_NOT_IN_BLOCK"),
        ({"height": 3}, "HEIGHT_MISMATCH"),
        ({"version": 1}, "PROOF_MALFORMED"),
        ({"chain_id": "som-other"}, "WRONG_CHAIN"),
    ]
    for change, code in cases:
        done = somnet_verify(tampered(proof, change), genesis)
        assert done.returncode == 1, (change, done.stdout, done.stderr)
        assert done.stderr.startswith(f"somnet verify: invalid proof: {code}: "), done.stderr
        assert done.stdout == ""
    done = somnet_verify(tampered(proof, {"height": 3}), genesis, "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout) | {"message": ""} == {
        "valid": False,
        "code": "HEIGHT_MISMATCH",
        "message": "",
    }
    other = proof.parent / "other-genesis.json"
    other.write_text(json.dumps(genesis_doc(START) | {"chain_id": "som-other"}))
    done = somnet_verify(proof, other)
    assert done.returncode == 1
    assert "invalid proof: WRONG_CHAIN: " in done.stderr


def test_unreadable_files_exit_2(files: tuple[Path, Path]) -> None:
    proof, genesis = files
    directory = proof.parent
    (directory / "not.json").write_text('{"version": 1,')
    (directory / "binary.json").write_bytes(b"\xff\xfe\x00")
    (directory / "deep.json").write_bytes(b"[" * 200_000 + b"]" * 200_000)
    names = ("missing.json", "not.json", "binary.json", "deep.json")
    for path in (directory / name for name in names):
        done = somnet_verify(path, genesis)
        assert done.returncode == 2, (path, done.stderr)
        assert done.stderr.startswith("somnet verify: "), done.stderr
        assert "Traceback" not in done.stderr
    done = somnet_verify(directory, genesis)  # a directory is no file
    assert done.returncode == 2, done.stderr
    done = somnet_verify(proof, directory / "missing-genesis.json")
    assert done.returncode == 2
    assert done.stderr.startswith("somnet verify: genesis: "), done.stderr
    done = somnet_verify(proof, directory / "not.json")
    assert done.returncode == 2, done.stderr


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = Network.create(tmp_path, validators=4, banks=1)
    try:
        yield net
    finally:
        codes = net.stop_all()
        assert all(code == 0 for code in codes.values()), (codes, dump_logs(net))


@pytest.mark.network
def test_a_proof_fetched_from_a_running_network_verifies_offline(
    network: Network, tmp_path: Path
) -> None:
    [bank] = network.banks
    issuer = network.genesis.issuer.participant_id
    network.start()
    network.wait_height(list(network.entries), 1)
    tx_hash = network.submit(bank, network.sign_transfer(bank, issuer, 150))
    assert network.wait_final(bank, tx_hash)["status"] == "final"
    # As a bank's operator does: `somnet proof` writes the file, `somnet verify` checks it.
    path = tmp_path / "proof.json"
    home = str(network.entries[bank].home)
    fetched = subprocess.run(
        [sys.executable, "-m", "cli.main", "proof", "--home", home, tx_hash, "--out", str(path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    proof = json.loads(path.read_text())
    genesis = network.directory / "genesis.json"
    done = somnet_verify(path, genesis)
    assert done.returncode == 0, done.stderr
    assert tx_hash in done.stdout
    certificate = flip_hex(proof["certificate"], len(bytes.fromhex(proof["certificate"])) - 1)
    done = somnet_verify(tampered(path, {"certificate": certificate}), genesis)
    assert done.returncode == 1, done.stdout
    assert "somnet verify: invalid proof: CERTIFICATE_BAD_SIGNATURE: " in done.stderr
    # Every validator serves the same transaction's proof, and each verifies.
    for validator in network.validators:
        served = network.call(validator, lambda api: api.transaction_proof(tx_hash))
        assert served["header"] == proof["header"]
        assert isinstance(verify(served, network.genesis), ProofVerified), validator
