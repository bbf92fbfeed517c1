"""Issue 8, with real processes: a payment's remittance text reaches no node in clear.

Bank-1 pays bank-2 through `somnet transfer --remittance`. Every node stores and gossips
the transaction, but the text is sealed to bank-1, bank-2 and the central bank: bank-3's
data directory (its LMDB file and its log) holds the sealed bytes and not one copy of the
text, while bank-2's statement shows it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.block import decode_block
from node.keys import load_key_file
from node.store import Store
from node.tx import Transfer, decode_tx, open_remittance, signed_message
from tests.integration.network import Network, dump_logs

pytestmark = [pytest.mark.network, pytest.mark.xdist_group("network")]

TEXT = "salary run 11/2026, client ACME LLC"
LEAKS = (TEXT.encode(), b"ACME LLC", b"salary run")


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = Network.create(tmp_path, validators=4, banks=3)
    try:
        yield net
    finally:
        codes = net.stop_all()
        assert all(code == 0 for code in codes.values()), (codes, dump_logs(net))


def send_with_remittance(network: Network, bank: str, to: str) -> dict[str, object]:
    """The operator's command, as a bank would run it; returns its JSON answer."""
    sent = subprocess.run(
        [sys.executable, "-m", "cli.main", "transfer", "--home", str(network.entries[bank].home),
         "--to", to, "--amount", "12.50", "--remittance", TEXT, "--wait"],
        cwd=network.directory, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    result = json.loads(sent.stdout)
    assert isinstance(result, dict)
    return result


def statement_entry(network: Network, node: str, account: str, tx_hash: str) -> dict[str, object]:
    """The account's statement line of `tx_hash`, from the whole settled range."""
    body = network.call(node, lambda api: api.statement(account, from_height=1, limit=1000))
    [entry] = [e for e in body["transactions"] if e["tx_hash"] == tx_hash]
    assert isinstance(entry, dict)
    return entry


def stored_transfer(network: Network, node: str, height: int, tx_hash: str) -> Transfer:
    """The transaction as the node's store holds it (read after the node stopped)."""
    home = network.entries[node].home
    with Store.open(home / "data", chain_id=network.genesis.chain_id, map_size_bytes=1 << 33) as s:
        block_bytes = s.load_block(height)
    assert block_bytes is not None
    txs = [decode_tx(tx, network.genesis.chain_id) for tx in decode_block(block_bytes).txs]
    [tx] = [tx for tx in txs if tx.tx_hash.hex() == tx_hash]
    assert isinstance(tx, Transfer)
    return tx


def test_a_third_bank_holds_no_plaintext_and_the_receiving_bank_reads_it(
    network: Network,
) -> None:
    bank_1, bank_2, bank_3 = network.banks
    issuer = network.genesis.issuer.participant_id
    everyone = list(network.entries)
    network.start()
    network.wait_height(everyone, 1)
    result = send_with_remittance(network, bank_1, bank_2)
    assert (result["status"], result["amount_tyiyn"]) == ("final", 1250)
    tx_hash = str(result["tx_hash"])
    height = int(str(result["height"]))
    for node in everyone:  # final everywhere: every node stored it
        assert network.wait_final(node, tx_hash)["status"] == "final"
    received = statement_entry(network, bank_2, bank_2, tx_hash)
    assert received | {"remittance": TEXT, "direction": "credit", "amount": 1250} == received
    assert (received["status"], received["height"]) == ("final", height)
    assert received["balance_after"] == network.balance(bank_2, bank_2)  # its only credit
    assert statement_entry(network, issuer, bank_2, tx_hash)["remittance"] == TEXT
    assert statement_entry(network, bank_1, bank_1, tx_hash)["remittance"] == TEXT
    seen_by_third = statement_entry(network, bank_3, bank_2, tx_hash)
    assert seen_by_third["amount"] == 1250  # the payment itself is no secret (yet)
    assert seen_by_third["remittance_status"] == "sealed"
    assert "remittance" not in seen_by_third

    codes = network.stop_all()  # every write and log line is on disk
    assert all(code == 0 for code in codes.values()), (codes, dump_logs(network))
    home = network.entries[bank_3].home
    data_file, log_file = home / "data" / "data.mdb", home / "node.log"
    for path in (data_file, log_file):
        content = path.read_bytes()
        assert content, path
        for leak in LEAKS:
            assert leak not in content, (path, leak)
    # No file of any node, nor of the network directory, holds the text either.
    for path in network.directory.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(leak in content for leak in LEAKS), path
    # The control: bank-3 does store the transaction, sealed, where the search looked,
    # and what it stores opens for bank-2 and not for bank-3.
    tx = stored_transfer(network, bank_3, height, tx_hash)
    assert tx.envelope is not None
    assert tx.envelope.recipients == tuple(sorted({bank_1, bank_2, issuer}))
    assert tx.raw[len(signed_message(tx)) :] in data_file.read_bytes()
    key_2 = load_key_file(network.entries[bank_2].home / "node_key.json")
    key_3 = load_key_file(home / "node_key.json")
    assert open_remittance(tx, bank_2, key_2) == TEXT
    assert open_remittance(tx, bank_3, key_3) is None
