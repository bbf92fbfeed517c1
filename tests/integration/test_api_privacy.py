"""Who may read and do what through the bank API (issue 9), on a real network.

Four validators and two banks run as processes; every request is signed (node/api_auth.py).
A bank reads its own accounts and transactions and is refused (403 FORBIDDEN) those of
another bank; the central bank and a configured supervisor read everything; an unknown
key is refused (401). No API credential lets a bank move another's money: that is the
ledger's rule, whatever the request's signer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from nacl.signing import SigningKey

from cli.api_client import ApiClient, ApiError, Credentials, blocking
from node.keys import load_key_file
from node.tx import sign_transfer
from tests.integration.network import Network, dump_logs

pytestmark = pytest.mark.network

SUPERVISOR = "sup-1"
SUPERVISOR_KEY = SigningKey.generate()


class Scene:
    """The network and what happened on it: one transfer by each bank."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self.bank_a, self.bank_b = network.banks
        self.validator = network.validators[1]  # any node answers; not the issuer's own
        self.tx_of: dict[str, str] = {}
        self.height_of: dict[str, int] = {}

    def call(self, participant_id: str, request: Any) -> Any:
        return self.network.call(self.validator, request, as_participant=participant_id)

    def as_supervisor(self, request: Any, key: SigningKey = SUPERVISOR_KEY) -> Any:
        client = ApiClient(self.network.api(self.validator), Credentials(SUPERVISOR, key))
        return blocking(client, request)

    def refusal(self, participant_id: str, request: Any) -> tuple[int, str]:
        with pytest.raises(ApiError) as caught:
            self.call(participant_id, request)
        return caught.value.status, caught.value.code


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    supervisor_hex = bytes(SUPERVISOR_KEY.verify_key).hex()
    network = Network.create(
        tmp_path_factory.mktemp("privacy"),
        validators=4,
        banks=2,
        env={"SOMNET_API_SUPERVISOR_KEYS": f"{SUPERVISOR}:{supervisor_hex}"},
    )
    network.start()
    scene = Scene(network)
    try:
        network.wait_ready()
        for bank in (scene.bank_a, scene.bank_b):
            tx_hash = network.submit(bank, network.sign_transfer(bank, network.issuer, 5))
            final = network.wait_final(scene.validator, tx_hash)
            assert final["status"] == "final", final
            scene.tx_of[bank] = tx_hash
            scene.height_of[bank] = int(final["height"])
        yield scene
    except BaseException:
        print(dump_logs(network))
        raise
    finally:
        network.stop_all()


def reads_of(bank: str, tx_hash: str) -> list[Any]:
    """Every read of one bank's records, as calls on the client."""
    return [
        lambda api: api.account(bank),
        lambda api: api.account_proof(bank),
        lambda api: api.statement(bank),
        lambda api: api.transaction(tx_hash),
    ]


def test_a_bank_reads_its_own_records_and_never_another_banks(scene: Scene) -> None:
    a, b = scene.bank_a, scene.bank_b
    for read in reads_of(b, scene.tx_of[b]):
        assert scene.refusal(a, read) == (403, "FORBIDDEN")
    for read in reads_of(a, scene.tx_of[a]):
        assert isinstance(scene.call(a, read), dict)
    # The other way round, too.
    for read in reads_of(a, scene.tx_of[a]):
        assert scene.refusal(b, read) == (403, "FORBIDDEN")


def test_the_central_bank_and_a_supervisor_read_every_banks_records(scene: Scene) -> None:
    for bank in (scene.bank_a, scene.bank_b):
        for read in reads_of(bank, scene.tx_of[bank]):
            assert isinstance(scene.call(scene.network.issuer, read), dict)
            assert isinstance(scene.as_supervisor(read), dict)


def test_an_unknown_key_is_401_even_under_a_supervisors_id(scene: Scene) -> None:
    read = reads_of(scene.bank_a, scene.tx_of[scene.bank_a])[0]
    with pytest.raises(ApiError) as caught:
        scene.as_supervisor(read, key=SigningKey.generate())
    assert (caught.value.status, caught.value.code) == (401, "SIGNATURE_INVALID")
    stranger = ApiClient(
        scene.network.api(scene.validator), Credentials("sup-2", SigningKey.generate())
    )
    with pytest.raises(ApiError) as caught:
        blocking(stranger, read)
    assert (caught.value.status, caught.value.code) == (401, "SIGNATURE_INVALID")


def test_a_block_lists_a_bank_only_its_own_transactions_and_counts_all(scene: Scene) -> None:
    a, b = scene.bank_a, scene.bank_b
    for height in {scene.height_of[a], scene.height_of[b]}:
        seen_by_a = scene.call(a, lambda api, h=height: api.block(h))
        seen_by_all = scene.call(scene.network.issuer, lambda api, h=height: api.block(h))
        assert seen_by_a["tx_count"] == seen_by_all["tx_count"] == len(seen_by_all["tx_hashes"])
        assert scene.tx_of[b] not in seen_by_a["tx_hashes"]
        assert set(seen_by_a["tx_hashes"]) <= set(seen_by_all["tx_hashes"])
        assert (scene.tx_of[a] in seen_by_a["tx_hashes"]) == (height == scene.height_of[a])
        assert seen_by_a["block_hash"] == seen_by_all["block_hash"]
    assert (
        scene.tx_of[b]
        in scene.call(scene.network.issuer, lambda api: api.block(scene.height_of[b]))["tx_hashes"]
    )


def test_no_api_credential_lets_a_bank_debit_an_account_it_does_not_own(scene: Scene) -> None:
    """bank-a signs the request, and the transaction: as itself (not the owner of the
    debited account), or claiming to be bank-b (a signature bank-b's key did not make).
    The ledger refuses both; no balance moves."""
    network, a, b = scene.network, scene.bank_a, scene.bank_b
    key_a = load_key_file(network.entries[a].home / "node_key.json")
    balances = {n: network.balance(scene.validator, n) for n in (a, b)}
    height = network.height(scene.validator)
    refusals: dict[tuple[str, str], tuple[object, object]] = {}
    for signer in (a, b):
        tx = sign_transfer(
            key_a,
            network.genesis.chain_id,
            signer=signer,
            uetr=uuid.uuid4().bytes,
            expiry_height=height + 50,
            from_account=b,
            to_account=a,
            amount=1_000,
        )

        def submit(api: ApiClient, tx: bytes = tx) -> Any:
            return api.submit(tx)

        for node in (a, scene.validator):  # its own node, and a validator directly
            try:
                result = network.call(node, submit, as_participant=a)
            except ApiError as exc:
                refusals[(signer, node)] = (exc.status, exc.code)
                continue
            # Kept for a block: the block records the refusal.
            final = network.wait_final(scene.validator, result["tx_hash"])
            refusals[(signer, node)] = (final["status"], final.get("code"))
    assert refusals == {
        (a, a): (400, "NOT_AUTHORIZED"),
        (a, scene.validator): (400, "NOT_AUTHORIZED"),
        (b, a): (400, "BAD_SIGNATURE"),
        (b, scene.validator): (400, "BAD_SIGNATURE"),
    }, refusals
    network.wait_height([scene.validator], height + 2)  # blocks went by; nothing moved
    assert {n: network.balance(scene.validator, n) for n in (a, b)} == balances
