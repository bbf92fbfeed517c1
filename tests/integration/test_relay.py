"""A bank node that answered `pending` gets the transaction to the proposers, on real
node processes: a batch larger than a peer frame settles entirely (its gossip was once one
payload no frame could hold, dropped whole: `somnet bench payout --legs 1000000` left 844
of 1,000 payouts pending for ever), and what the validators lost is sent again."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.config import FRAME_BYTES_MIN
from node.keys import load_key_file
from node.tx import sign_payout
from tests.integration.network import Network, dump_logs

pytestmark = pytest.mark.network

LEGS = 1000  # a full payout: about 10 KB
DEADLINE_S = 90


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    # The smallest frame a node allows, so that one batch outgrows it (at the default
    # 4 MiB, only several batches kept in one store write did, which is timing).
    env = {"SOMNET_P2P_FRAME_BYTES_MAX": str(FRAME_BYTES_MIN)}
    net = Network.create(tmp_path, validators=4, banks=2, env=env)
    try:
        yield net
    finally:
        for node_id, process in net.processes.items():
            if process.poll() is None and node_id in net.validators:
                process.send_signal(signal.SIGCONT)
        codes = net.stop_all()
        assert all(code == 0 for code in codes.values()), (codes, dump_logs(net))


def start_and_wait_caught_up(network: Network, bank: str) -> None:
    network.start()
    network.wait_for(
        lambda: network.height(bank) >= 1 and bool(network.status(bank)["caught_up"]),
        60,
        f"{bank} caught up at height >= 1",
    )


def payouts(network: Network, bank: str, to: str, count: int) -> list[bytes]:
    key = load_key_file(network.entries[bank].home / "node_key.json")
    expiry = network.height(bank) + 5000
    return [
        sign_payout(key, network.genesis.chain_id, signer=bank, uetr=uuid.uuid4().bytes,
                    expiry_height=expiry, from_account=bank, legs=[(to, 1)] * LEGS)
        for _ in range(count)
    ]  # fmt: skip


def submit_batch(network: Network, bank: str, txs: list[bytes]) -> list[str]:
    results = network.call(bank, lambda api: api.submit_batch(txs))
    assert all(r.get("status") == "pending" for r in results), results
    return [str(r["tx_hash"]) for r in results]


def assert_all_final(network: Network, bank: str, tx_hashes: list[str]) -> None:
    for tx_hash in tx_hashes:
        assert network.wait_final(bank, tx_hash, DEADLINE_S)["status"] == "final"


def test_a_batch_larger_than_a_peer_frame_settles_entirely(network: Network) -> None:
    bank, other = network.banks
    start_and_wait_caught_up(network, bank)
    txs = payouts(network, bank, other, 50)
    assert sum(len(tx) for tx in txs) > FRAME_BYTES_MIN  # kept in one write, gossiped
    before = network.balance(bank, other)
    assert_all_final(network, bank, submit_batch(network, bank, txs))
    assert network.balance(bank, other) == before + 50 * LEGS
    assert "fits no frame" not in network.log(bank)


def test_what_every_validator_lost_is_sent_again(network: Network) -> None:
    """The bank gossips while the validators are paused, then they are killed (what was in
    their socket buffers is gone) and restarted with empty mempools: only the bank holds
    the payouts, and it sends them again."""
    bank, other = network.banks
    start_and_wait_caught_up(network, bank)
    # Every link up: a payload queued for a link still dialing would survive the kill.
    network.wait_for(
        lambda: set(network.validators) <= set(network.status(bank)["peers"]),
        60,
        f"{bank} linked to every validator",
    )
    txs = payouts(network, bank, other, 3)
    for validator in network.validators:
        network.processes[validator].send_signal(signal.SIGSTOP)
    tx_hashes = submit_batch(network, bank, txs)
    for validator in network.validators:
        network.kill9(validator)
    network.start(*network.validators)
    assert_all_final(network, bank, tx_hashes)
