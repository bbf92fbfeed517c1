"""Issue 7's promises against real node processes: accepted means kept, every accepted
transfer gets a final fate, the same bytes get their first answer, and a node that is
catching up says so instead of guessing.

Validators are paused with SIGSTOP to make each situation certain rather than likely: a
paused process holds its sockets open but reads nothing and sends nothing.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.api_client import ApiError
from tests.integration.network import Network, dump_logs

pytestmark = pytest.mark.network

AMOUNT = 100


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = Network.create(tmp_path, validators=4, banks=2)
    try:
        yield net
    finally:
        for node_id in list(net.processes):
            signal_node(net, node_id, signal.SIGCONT)
        codes = net.stop_all()
        assert all(code == 0 for code in codes.values()), (codes, dump_logs(net))


def signal_node(network: Network, node_id: str, signum: signal.Signals) -> None:
    process = network.processes[node_id]
    if process.poll() is None:
        process.send_signal(signum)


def start_and_wait_caught_up(network: Network, bank: str) -> None:
    network.start()
    network.wait_for(
        lambda: network.height(bank) >= 1 and bool(network.status(bank)["caught_up"]),
        60,
        f"{bank} caught up at height >= 1",
    )


def refusal(call: object) -> ApiError:
    assert callable(call)
    with pytest.raises(ApiError) as info:
        call()
    return info.value


def test_accepted_transfers_survive_a_kill_of_the_only_node_holding_them(
    network: Network,
) -> None:
    """Finding 4: a bank node answered 202 before the transfer was stored or had left it.
    Here the validators are paused while the bank accepts, then every node is killed: the
    bank's store is the only copy, and after a restart every accepted transfer is final."""
    bank, other = network.banks
    start_and_wait_caught_up(network, bank)
    before = network.balance(bank, bank)
    for validator in network.validators:
        signal_node(network, validator, signal.SIGSTOP)
    accepted = []
    for _ in range(12):
        tx = network.sign_transfer(bank, other, AMOUNT)
        answer = network.call(bank, lambda api, tx=tx: api.submit(tx))
        assert answer["status"] == "pending", answer
        accepted.append(str(answer["tx_hash"]))
    network.kill9(bank)  # the moment it answered
    for validator in network.validators:
        network.kill9(validator)  # what they had in their socket buffers is gone too
    network.start(bank, *network.validators)
    network.wait_for(lambda: network.height(bank) >= 0, 60, f"{bank} serving its API")
    for tx_hash in accepted:
        assert network.wait_final(bank, tx_hash)["status"] == "final"
    assert network.balance(bank, bank) == before - 12 * AMOUNT  # each applied once


def test_a_catching_up_node_refuses_to_judge_then_answers_the_truth(network: Network) -> None:
    """Finding 7: just after a restart a bank node answered 202 to a transfer whose UETR
    was consumed long before, then 404. Finding 6: the exact bytes of a final transfer,
    resubmitted after its expiry, answered EXPIRED."""
    bank, other = network.banks
    start_and_wait_caught_up(network, bank)
    final_tx = network.sign_transfer(bank, other, AMOUNT, expiry_blocks=2)
    final_hash = network.submit(bank, final_tx)
    assert network.wait_final(bank, final_hash)["status"] == "final"
    network.kill9(bank)
    target = network.height(network.validators[0]) + 5  # its expiry is well past
    network.wait_height(network.validators, target)
    for validator in network.validators:
        signal_node(network, validator, signal.SIGSTOP)
    network.start(bank)
    network.wait_for(lambda: network.height(bank) >= 0, 60, f"{bank} serving its API")
    status = network.status(bank)
    assert status["caught_up"] is False, status
    fresh = network.sign_transfer(bank, other, AMOUNT)
    error = refusal(lambda: network.submit(bank, fresh))
    assert (error.status, error.body["code"]) == (503, "CATCHING_UP")
    error = refusal(lambda: network.tx_status(bank, "ab" * 32))
    assert (error.status, error.body["code"]) == (503, "CATCHING_UP")
    # What it knows for certain it still answers: the final transfer is in its store.
    assert network.submit(bank, final_tx) == final_hash
    for validator in network.validators:
        signal_node(network, validator, signal.SIGCONT)
    network.wait_for(
        lambda: network.height(bank) >= target and bool(network.status(bank)["caught_up"]),
        60,
        f"{bank} caught up to height {target}",
    )
    answer = network.call(bank, lambda api: api.submit(final_tx))
    assert (answer["status"], answer["tx_hash"]) == ("final", final_hash), answer
    assert network.tx_status(bank, final_hash)["status"] == "final"
