"""Governance changing a running network of real node processes (4 validators, 2 banks):
an admitted bank's node joins from the genesis file and its own key, a fifth validator
joins the set and an original one leaves it while blocks keep being final, a node stopped
before those changes syncs across them, and a bank's node restarts with its rotated key.

The tests run in order on one network: each leaves it as the next expects (bank-2 is down
from the validator-set test until the late-node test; val-3 leaves for good).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from cli.api_client import ApiClient, ApiError
from cli.devnet import node_toml
from cli.entry import NodeEntry
from cli.ports import free_port_range
from node.keys import load_key_file, write_key_file
from node.tx import sign_transfer
from tests.integration.network import Network, ok, running_network, somnet
from tests.integration.test_gov_cli import approved, governance, settles, submitted, transfer

pytestmark = pytest.mark.network

CB = "nbkr"
BANK, LATE_BANK = "bank-1", "bank-2"
NEW_BANK, NEW_VALIDATOR, LEAVING_VALIDATOR = "bank-3", "val-5", "val-3"
DEADLINE_S = 90
CHANGES_AT: list[int] = []  # heights the validator-set test's changes are in force from


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    with running_network(tmp_path_factory.mktemp("gov-net"), deadline_s=DEADLINE_S) as net:
        yield net


def admit_node(network: Network, node_id: str, role: str) -> None:
    """Admit a participant whose key the test makes, and write its node's home as
    `somnet init` writes the others' (the genesis file, its key, node.toml)."""
    key = SigningKey.generate()
    base = free_port_range(2)
    peer_address, api_address = f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"
    action_file = approved(
        network, f"admit-{node_id}", "admit", "--id", node_id, "--name", node_id,
        "--role", role, "--public-key", bytes(key.verify_key).hex(),
        "--peer-address", peer_address, "--api-address", api_address,
    )  # fmt: skip
    submitted(network, action_file)
    entry = NodeEntry(
        node_id=node_id,
        role=role,
        home=network.directory / node_id,
        api_url=f"http://{api_address}",
        peer_url=f"http://{peer_address}",
    )
    entry.home.mkdir()
    shutil.copy(network.directory / "genesis.json", entry.home / "genesis.json")
    write_key_file(entry.home / "node_key.json", key)
    (entry.home / "node.toml").write_text(node_toml(entry))
    network.entries[node_id] = entry


def caught_up_with(network: Network, node_id: str, reference: str = CB) -> None:
    height = network.height(reference)
    network.wait_for(
        lambda: network.height(node_id) >= height and network.status(node_id)["caught_up"],
        DEADLINE_S,
        f"{node_id} caught up with {reference} at height {height}",
        seen=lambda: network.height(node_id),
    )


def pay(network: Network, via: str, bank: str, to: str, amount: int, key: SigningKey) -> str:
    """A transfer signed with `key` (no remittance), submitted to `via`; its hash."""
    return network.submit(via, signed_transfer(network, via, bank, to, amount, key))


def signed_transfer(
    network: Network, via: str, bank: str, to: str, amount: int, key: SigningKey
) -> bytes:
    return sign_transfer(
        key,
        network.genesis.chain_id,
        signer=bank,
        uetr=uuid.uuid4().bytes,
        expiry_height=network.height(via) + 1000,
        from_account=bank,
        to_account=to,
        amount=amount,
    )


def node_key(network: Network, node_id: str) -> SigningKey:
    return load_key_file(network.entries[node_id].home / "node_key.json")


def set_validators(network: Network, ids: list[str]) -> int:
    """Submit the whole new set (power 1 each); the height it is in force from."""
    args = [arg for i in ids for arg in ("--validator", f"{i}=1")]
    submitted(network, approved(network, "set-validators", "set-validators", *args))
    schedule = governance(network, CB)["validators"]
    [entry] = [e for e in schedule if sorted(v["id"] for v in e["validators"]) == sorted(ids)]
    return int(entry["from_height"])


def validating(network: Network, node_id: str) -> bool:
    return bool(network.status(node_id)["validating"])


def finalizing(network: Network, node_ids: list[str], beyond: int, blocks: int = 3) -> None:
    """Every node settles `blocks` more heights past `beyond`."""
    network.wait_height(node_ids, beyond + blocks, timeout_s=DEADLINE_S)


def test_an_admitted_bank_node_syncs_from_genesis_and_transfers(network: Network) -> None:
    admit_node(network, NEW_BANK, "bank")
    network.start(NEW_BANK)
    caught_up_with(network, NEW_BANK)
    funded = pay(network, BANK, BANK, NEW_BANK, 500, node_key(network, BANK))
    assert network.wait_final(BANK, funded)["status"] == "final"
    # Its own node takes its transfer (the API knows its key), and it settles.
    paid = pay(network, NEW_BANK, NEW_BANK, BANK, 200, node_key(network, NEW_BANK))
    assert network.wait_final(NEW_BANK, paid)["status"] == "final"
    assert network.wait_final(CB, paid)["status"] == "final"
    # A remittance to it is sealed to its key from the ledger (genesis does not know it),
    # and its node opens it.
    sent = somnet("transfer", "--home", network.entries[BANK].home, "--to", NEW_BANK,
                  "--amount", "0.50", "--remittance", "welcome", "--wait",
                  cwd=network.directory)  # fmt: skip
    tx_hash = json.loads(ok(sent))["tx_hash"]
    statement = network.call(NEW_BANK, lambda api: api.statement(NEW_BANK, from_height=1))
    [entry] = [e for e in statement["transactions"] if e["tx_hash"] == tx_hash]
    assert entry["remittance"] == "welcome"
    assert network.balance(CB, NEW_BANK) == 350
    network.assert_same_chain([CB, NEW_BANK], network.height(NEW_BANK))


def test_a_validator_joins_and_another_leaves_while_blocks_are_final(network: Network) -> None:
    assert network.stop(LATE_BANK) == 0  # started again by the next test, after the changes
    admit_node(network, NEW_VALIDATOR, "validator")
    network.start(NEW_VALIDATOR)
    caught_up_with(network, NEW_VALIDATOR)
    assert (validating(network, NEW_VALIDATOR), validating(network, LEAVING_VALIDATOR)) == (
        False,
        True,
    )
    originals = sorted(n for n in network.validators if n != NEW_VALIDATOR)
    joined_at = set_validators(network, [*originals, NEW_VALIDATOR])
    CHANGES_AT.append(joined_at)
    running = [*originals, NEW_VALIDATOR, BANK, NEW_BANK]
    finalizing(network, running, joined_at)
    assert validating(network, NEW_VALIDATOR)  # its status follows the ledger, no restart
    # The new validator votes: a commit certificate since the change carries its vote.
    network.wait_for(
        lambda: any(
            NEW_VALIDATOR in network.block(CB, h)["certificate"]["signers"]
            for h in range(joined_at, network.height(CB) + 1)
        ),
        DEADLINE_S,
        f"a certificate from height {joined_at} on signed by {NEW_VALIDATOR}",
    )
    staying = [v for v in [*originals, NEW_VALIDATOR] if v != LEAVING_VALIDATOR]
    left_at = set_validators(network, staying)
    CHANGES_AT.append(left_at)
    network.wait_height([CB], left_at)
    network.wait_for(
        lambda: not validating(network, LEAVING_VALIDATOR),
        DEADLINE_S,
        f"{LEAVING_VALIDATOR}'s status saying it no longer validates",
    )
    assert network.status(LEAVING_VALIDATOR)["role"] == "validator"  # still a participant
    assert network.stop(LEAVING_VALIDATOR) == 0
    del network.entries[LEAVING_VALIDATOR]
    finalizing(network, [*staying, BANK, NEW_BANK], left_at)
    shown = network.call(NEW_BANK, ApiClient.validators)
    assert sorted(v["id"] for v in shown["validators"]) == sorted(staying)
    paid = pay(network, BANK, BANK, NEW_BANK, 100, node_key(network, BANK))
    assert network.wait_final(BANK, paid)["status"] == "final"


def test_a_node_stopped_before_the_changes_syncs_across_them(network: Network) -> None:
    network.start(LATE_BANK)
    caught_up_with(network, LATE_BANK)
    height = network.height(LATE_BANK)
    network.assert_same_chain([CB, NEW_VALIDATOR, LATE_BANK], height)
    paid = pay(network, LATE_BANK, LATE_BANK, BANK, 100, node_key(network, LATE_BANK))
    assert network.wait_final(LATE_BANK, paid)["status"] == "final"
    # Its proof leads from genesis across both changes: `somnet verify` needs genesis only.
    home, proof = network.entries[LATE_BANK].home, network.directory / "late-proof.json"
    ok(somnet("proof", "--home", home, paid, "--out", proof, cwd=network.directory))
    assert [c["from_height"] for c in json.loads(proof.read_text())["validator_changes"]] == [
        *CHANGES_AT
    ]
    report = ok(somnet("verify", proof, "--genesis", home / "genesis.json", "--json",
                       cwd=network.directory))  # fmt: skip
    assert json.loads(report)["valid"] is True


def test_a_bank_node_restarts_with_its_rotated_key(network: Network, tmp_path: Path) -> None:
    old_key = node_key(network, BANK)
    new_key = SigningKey.generate()
    new_key_file = tmp_path / "bank-1-new.json"
    write_key_file(new_key_file, new_key)
    submitted(network, approved(network, "rotate", "rotate-key", "--id", BANK,
                                "--new-key", str(new_key_file)))  # fmt: skip
    caught_up_with(network, BANK)  # its own ledger holds the rotation
    assert network.stop(BANK) == 0
    key_file = network.entries[BANK].home / "node_key.json"
    key_file.unlink()  # as the operator replaces it
    write_key_file(key_file, new_key)
    network.start(BANK)
    caught_up_with(network, BANK)
    settles(transfer(network, BANK, LATE_BANK, "1.00"))  # from its node, with the new key
    old_signed = signed_transfer(network, BANK, BANK, LATE_BANK, 100, old_key)
    try:
        code = network.call(BANK, lambda api: api.submit(old_signed)).get("code")
    except ApiError as exc:
        code = exc.code
    assert code == "BAD_SIGNATURE"
