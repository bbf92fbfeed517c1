"""`somnet gov` against a network of real node processes (4 validators, 2 banks), as
subprocesses of the installed command: officers approve actions from the key files
`somnet init` wrote (DIR/officers/), the central bank's node submits them, and the ledger
applies them: freezes, suspensions, a key rotation, an admission.

One network serves the module. bank-1 is the bank frozen and suspended (and back); bank-2's
key is rotated by the last test, so no test before it depends on that, and no test after
it may sign with bank-2's old node key.

An admitted node joining, validator-set changes in consensus and a node restarted with
its rotated key are tests/integration/test_governance_network.py's.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from cli.api_client import ApiError
from cli.gov import decode_action_file
from node.keys import load_key_file, write_key_file
from node.tx import decode_tx, sign_govern, sign_transfer
from tests.integration.network import Network, ok, running_network, somnet

pytestmark = pytest.mark.network

CB = "nbkr"
BANK, OTHER_BANK = "bank-1", "bank-2"
DEADLINE_S = 60


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    with running_network(tmp_path_factory.mktemp("gov-cli"), deadline_s=DEADLINE_S) as net:
        yield net


def home(network: Network, node_id: str) -> Path:
    return network.entries[node_id].home


def officer_key(network: Network, officer: str) -> Path:
    return network.directory / "officers" / f"{officer}.json"


def prepared(network: Network, name: str, *action: str) -> Path:
    """An action file prepared from the central bank's node (its height sets the expiry)."""
    out = network.directory / f"{name}-{uuid.uuid4().hex[:8]}.json"
    ok(somnet("gov", *action, "--home", home(network, CB), "--out", out, cwd=network.directory))
    return out


def approved(network: Network, name: str, *action: str, officers: int = 2) -> Path:
    """An action file signed by the first `officers` officers (the first checks genesis)."""
    out = prepared(network, name, *action)
    for n in range(1, officers + 1):
        check = ("--genesis", network.directory / "genesis.json") if n == 1 else ()
        ok(somnet("gov", "sign", out, "--officer-key", officer_key(network, f"officer-{n}"),
                  *check, cwd=network.directory))  # fmt: skip
    return out


def submitted(network: Network, action_file: Path, *, by: str = CB) -> dict[str, Any]:
    done = somnet("gov", "submit", action_file, "--home", home(network, by), "--wait", "--json",
                  cwd=network.directory)  # fmt: skip
    result = json.loads(ok(done))
    assert result["status"] == "final", result
    return dict(result)


def governance(network: Network, node_id: str) -> dict[str, Any]:
    done = somnet("gov", "show", "--home", home(network, node_id), "--json", cwd=network.directory)
    return dict(json.loads(ok(done)))


def transfer(network: Network, bank: str, to: str, amount: str) -> subprocess.CompletedProcess[str]:
    """`somnet transfer` from the bank's node, signed with its node key, waited for."""
    return somnet("transfer", "--home", home(network, bank), "--to", to, "--amount", amount,
                  "--wait", cwd=network.directory)  # fmt: skip


def settles(done: subprocess.CompletedProcess[str]) -> None:
    assert json.loads(ok(done))["status"] == "final"


def refused(done: subprocess.CompletedProcess[str], code: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith(f"somnet transfer: {code}: "), done.stderr


def test_a_frozen_account_is_not_debited_but_credited_until_unfrozen(network: Network) -> None:
    freeze = approved(network, "freeze", "freeze", "--account", BANK)
    result = submitted(network, freeze)
    assert result["approvals"] == ["officer-1", "officer-2"]
    assert result["action"] == {"action": "freeze", "account": BANK}
    refused(transfer(network, BANK, OTHER_BANK, "1.00"), "ACCOUNT_FROZEN")
    before = network.balance(CB, BANK)
    settles(transfer(network, OTHER_BANK, BANK, "2.50"))  # incoming money is never lost
    assert network.balance(CB, BANK) == before + 250
    # The central bank and the account's owner see the freeze; another bank does not.
    assert governance(network, CB)["frozen_accounts"] == [BANK]
    assert governance(network, BANK)["frozen_accounts"] == [BANK]
    assert governance(network, OTHER_BANK)["frozen_accounts"] == []
    shown = ok(somnet("gov", "show", "--home", home(network, CB), cwd=network.directory))
    assert "FROZEN ACCOUNT" in shown.splitlines()[-2]
    assert shown.splitlines()[-1] == BANK
    submitted(network, approved(network, "unfreeze", "unfreeze", "--account", BANK))
    assert governance(network, CB)["frozen_accounts"] == []
    settles(transfer(network, BANK, OTHER_BANK, "1.00"))


def test_one_signature_short_nothing_is_sent(network: Network) -> None:
    action_file = approved(network, "suspend", "suspend", "--id", OTHER_BANK, officers=1)
    done = somnet("gov", "submit", action_file, "--home", home(network, CB), "--wait",
                  cwd=network.directory)  # fmt: skip
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr == (
        "somnet gov: GOV_NOT_APPROVED: 1 of the 2 officer approvals needed: 1 more needed;"
        " nothing was sent\n"
    )
    # The transaction the command would have sent (Ed25519 signs deterministically) is
    # unknown to the node, and the bank is not suspended.
    parsed = decode_action_file(action_file.read_text())
    tx = sign_govern(
        load_key_file(home(network, CB) / "node_key.json"),
        parsed.chain_id,
        signer=CB,
        uetr=parsed.uetr,
        expiry_height=parsed.expiry_height,
        action=parsed.action,
        approvals=[(a.officer_id, a.signature) for a in parsed.approvals],
    )
    tx_hash = decode_tx(tx, parsed.chain_id).tx_hash.hex()
    with pytest.raises(ApiError) as unknown:
        network.tx_status(CB, tx_hash)
    assert unknown.value.code == "NOT_FOUND"
    participants = {p["id"]: p for p in governance(network, CB)["participants"]}
    assert not participants[OTHER_BANK]["suspended"]


def test_a_bank_cannot_submit_a_governance_action(network: Network) -> None:
    action_file = approved(network, "suspend", "suspend", "--id", OTHER_BANK)
    done = somnet("gov", "submit", action_file, "--home", home(network, BANK), "--wait",
                  cwd=network.directory)  # fmt: skip
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith("somnet gov: NOT_AUTHORIZED: "), done.stderr
    participants = {p["id"]: p for p in governance(network, CB)["participants"]}
    assert not participants[OTHER_BANK]["suspended"]


def test_a_suspended_bank_neither_sends_nor_receives_until_reinstated(network: Network) -> None:
    submitted(network, approved(network, "suspend", "suspend", "--id", BANK))
    participants = {p["id"]: p for p in governance(network, OTHER_BANK)["participants"]}
    assert participants[BANK]["suspended"]
    refused(transfer(network, BANK, OTHER_BANK, "1.00"), "PARTICIPANT_SUSPENDED")
    refused(transfer(network, OTHER_BANK, BANK, "1.00"), "PARTICIPANT_SUSPENDED")
    shown = ok(somnet("gov", "show", "--home", home(network, CB), cwd=network.directory))
    [row] = [line.split() for line in shown.splitlines() if line.startswith(f"{BANK} ")]
    assert row[:3] == [BANK, "bank", "yes"]
    submitted(network, approved(network, "reinstate", "reinstate", "--id", BANK))
    settles(transfer(network, BANK, OTHER_BANK, "1.00"))
    settles(transfer(network, OTHER_BANK, BANK, "1.00"))


def test_admitting_a_bank_lists_it_with_its_key(network: Network) -> None:
    key = SigningKey.generate()
    public_key = bytes(key.verify_key).hex()
    action_file = approved(
        network, "admit", "admit", "--id", "bank-3", "--name", "Third Bank", "--role", "bank",
        "--public-key", public_key, "--peer-address", "127.0.0.1:7999",
        "--api-address", "127.0.0.1:8999",
    )  # fmt: skip
    submitted(network, action_file)
    participants = {p["id"]: p for p in governance(network, OTHER_BANK)["participants"]}
    assert participants["bank-3"] == {"id": "bank-3", "name": "Third Bank", "role": "bank",
                                      "suspended": False, "public_key": public_key}  # fmt: skip
    shown = governance(network, CB)
    assert [v["id"] for v in shown["validators"][0]["validators"]] == sorted(network.validators)
    assert (shown["officers"], shown["officer_threshold"]) == (
        ["officer-1", "officer-2", "officer-3"],
        2,
    )


def test_after_a_rotation_the_new_key_signs_and_the_old_is_refused(
    network: Network, tmp_path: Path
) -> None:
    """Last in the module: bank-2's node key is retired here."""
    new_key_file = tmp_path / "bank-2-new.json"
    new_key = SigningKey.generate()
    write_key_file(new_key_file, new_key)
    action_file = approved(network, "rotate", "rotate-key", "--id", OTHER_BANK,
                           "--new-key", new_key_file)  # fmt: skip
    submitted(network, action_file)
    participants = {p["id"]: p for p in governance(network, CB)["participants"]}
    assert participants[OTHER_BANK]["public_key"] == bytes(new_key.verify_key).hex()
    # The bank's node key is the old one now: the API no longer takes its requests, and a
    # transfer it signed is refused, whoever submits it.
    refused(transfer(network, OTHER_BANK, BANK, "1.00"), "SIGNATURE_INVALID")
    old_signed = network.sign_transfer(OTHER_BANK, BANK, 100, remittance="")
    try:
        code = network.call(CB, lambda api: api.submit(old_signed)).get("code")
    except ApiError as exc:
        code = exc.code
    assert code == "BAD_SIGNATURE"
    before = network.balance(CB, BANK)
    tx = sign_transfer(
        new_key,
        network.genesis.chain_id,
        signer=OTHER_BANK,
        uetr=uuid.uuid4().bytes,
        expiry_height=network.height(CB) + 1000,
        from_account=OTHER_BANK,
        to_account=BANK,
        amount=300,
    )
    assert network.wait_final(CB, network.submit(CB, tx))["status"] == "final"
    assert network.balance(CB, BANK) == before + 300
