"""Anchoring against a real EVM chain (anvil, tests/integration/anvil.py) and a real
network of node processes: anchors reach the chain, finalize and verify; a kill -9
between signing and sending, or between sending and the receipt, never anchors a height
twice; a stuck anchor is replaced (same nonce, higher fee, up to the cap) and
lands once; an EVM outage delays anchoring only; bad endpoints, keys and anchors are named."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from cli.api_client import ApiClient, ApiError
from node.anchor import (
    ANCHOR_TAG,
    ATTEMPTS_MAX,
    AnchorPayload,
    decode_calldata,
    decode_record,
    encode_calldata,
    write_anchor_key,
)
from node.genesis import load_genesis
from node.store import Store
from tests.integration.anvil import Anvil, HoldingProxy
from tests.integration.network import Network, dump_logs

pytestmark = pytest.mark.network

ANVIL_DEV_KEY = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
EVERY = 3
SLOWER = {"SOMNET_CONSENSUS_EMPTY_BLOCK_INTERVAL_MS": "500"}


@pytest.fixture
def anvil(tmp_path: Path) -> Iterator[Anvil]:
    chain = Anvil(tmp_path)
    chain.start()
    try:
        yield chain
    finally:
        chain.stop()


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = Network.create(tmp_path, banks=1, env=SLOWER)
    try:
        yield net
    finally:
        codes = net.stop_all()
        assert all(code == 0 for code in codes.values()), (codes, dump_logs(net))


def start_anchoring(net: Network, rpc_url: str, key: Path | None = None, **more: str) -> None:
    """Start every node; nbkr anchors through its SOMNET_ANCHOR_* settings."""
    if key is None:
        key = net.directory / "anvil_dev_key.json"
        if not key.exists():
            write_anchor_key(key, bytes.fromhex(ANVIL_DEV_KEY))
    anchor = {"SOMNET_ANCHOR_ENABLED": "true", "SOMNET_ANCHOR_RPC_URL": rpc_url,
              "SOMNET_ANCHOR_EVERY_BLOCKS": str(EVERY), "SOMNET_ANCHOR_KEY_FILE": str(key),
              "SOMNET_ANCHOR_POLL_INTERVAL_MS": "200", "SOMNET_ANCHOR_RPC_TIMEOUT_MS": "2000",
              **{f"SOMNET_ANCHOR_{k.upper()}": v for k, v in more.items()}}  # fmt: skip
    base = net.env
    others = [n for n in net.entries if n != "nbkr" and not net.alive(n)]
    if others:
        net.start(*others)
    net.env = {**base, **anchor}
    try:
        net.start("nbkr")
    finally:
        net.env = base


def anchors(net: Network) -> dict[str, Any]:
    return dict(net.call("nbkr", ApiClient.anchors))


def anchor_error(net: Network) -> str | None:
    """The anchoring error nbkr reports, None until its API answers with one."""
    try:
        return anchors(net)["error"]  # type: ignore[no-any-return]
    except ApiError:
        return None


def anchor_at(net: Network, height: int) -> dict[str, Any] | None:
    try:
        return dict(net.call("nbkr", lambda api: api.anchor(height)))
    except ApiError as exc:
        if exc.status in (404, 0):
            return None
        raise


def wait_finalized(net: Network, height: int, timeout_s: float = 90) -> dict[str, Any]:
    return net.wait_for(
        lambda: (a := anchor_at(net, height)) is not None and a["status"] == "finalized" and a,
        timeout_s, f"the anchor of height {height} finalized",
        seen=lambda: anchor_at(net, height),
    )  # fmt: skip


def verify(net: Network, rpc: str, height: int, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "anchor", "verify", "--height", str(height),
         "--rpc", rpc, *extra],
        capture_output=True, text=True, timeout=60, cwd=net.directory,
    )  # fmt: skip


def stored_records(net: Network) -> dict[int, Any]:
    home = net.entries["nbkr"].home
    chain_id = load_genesis(home / "genesis.json").chain_id
    with Store.open_readonly(home / "data", chain_id=chain_id) as store:
        return {h: decode_record(data) for h, data in store.load_anchors(1000)}


def test_anchors_reach_the_chain_finalize_and_verify(network: Network, anvil: Anvil) -> None:
    start_anchoring(network, anvil.url)
    for height in (EVERY, 2 * EVERY, 3 * EVERY):
        record = wait_finalized(network, height)
        assert record["evm_block_number"] is not None
    # Anyone can check an anchor: from the node's API with genesis, or from its home.
    genesis = str(network.directory / "genesis.json")
    key_home = str(network.entries[network.banks[0]].home)
    passed = verify(network, anvil.url, 2 * EVERY, "--api", network.api("nbkr"), "--genesis",
                    genesis, "--key-home", key_home)  # fmt: skip
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert f"anchor of height {2 * EVERY} HOLDS" in passed.stdout
    print(passed.stdout)
    from_home = verify(network, anvil.url, EVERY, "--home", str(network.entries["nbkr"].home))
    assert from_home.returncode == 0, from_home.stdout + from_home.stderr
    # A height the node has not anchored does not hold.
    missing = verify(network, anvil.url, EVERY + 1, "--api", network.api("nbkr"), "--genesis",
                     genesis, "--key-home", key_home)  # fmt: skip
    assert missing.returncode == 1 and "no anchor for height" in missing.stdout
    lags = [a["finalized_at_height"] - a["height"] for a in anchors(network)["anchors"]
            if a["status"] == "finalized"]  # fmt: skip
    print(f"anchoring lag in somnet blocks (settled -> EVM finalized): {sorted(lags)}")
    assert all(count == 1 for count in anvil.anchors_on_chain().values())


def test_kill9_between_signing_and_sending_and_before_the_receipt_anchors_once(
    network: Network, anvil: Anvil
) -> None:
    proxy = HoldingProxy(anvil.url)
    try:
        start_anchoring(network, proxy.url)
        wait_finalized(network, EVERY)
        # 1. Signed and stored, the send in flight (held by the proxy): kill -9.
        proxy.holding.set()
        network.wait_for(lambda: proxy.held, 60, "an anchor's send to be in flight")
        network.kill9("nbkr")
        pending = [r for r in stored_records(network).values() if r.stage.value == "signed"]
        assert len(pending) == 1, pending
        assert pending[0].attempts[-1].raw_tx.hex() == proxy.held[0].removeprefix("0x")
        first_height = pending[0].height
        proxy.holding.clear()
        proxy.release.set()
        # 2. Sent and in anvil's pool, no block yet (mining off): kill -9.
        start_anchoring(network, proxy.url)
        wait_finalized(network, first_height)  # the same transaction, sent again
        anvil.rpc("evm_setIntervalMining", [0])

        def sent_not_mined() -> Any:
            for record in stored_records(network).values():
                if record.height > first_height and record.stage.value == "sent":
                    tx = anvil.rpc("eth_getTransactionByHash",
                                   ["0x" + record.attempts[-1].tx_hash.hex()])  # fmt: skip
                    if tx is not None and tx["blockNumber"] is None:
                        return record
            return None

        second = network.wait_for(sent_not_mined, 60, "an anchor sent, not in a block")
        network.kill9("nbkr")
        anvil.rpc("evm_setIntervalMining", [1])
        start_anchoring(network, proxy.url)
        wait_finalized(network, second.height)
        wait_finalized(network, second.height + EVERY)
    finally:
        proxy.close()
    on_chain = anvil.anchors_on_chain()
    assert on_chain[first_height] == 1 and on_chain[second.height] == 1, on_chain
    assert all(count == 1 for count in on_chain.values()), on_chain
    assert set(on_chain) <= set(stored_records(network)), on_chain


def test_an_evm_outage_delays_anchoring_never_consensus(network: Network, anvil: Anvil) -> None:
    start_anchoring(network, anvil.url)
    wait_finalized(network, EVERY)
    anvil.pause()
    try:
        paused_at = network.height("nbkr")
        # Far more than BACKLOG_DUE_MAX due heights go by while the chain is away.
        network.wait_height(list(network.entries), paused_at + 8 * EVERY, timeout_s=120)
        network.wait_for(lambda: anchor_error(network), 30, "the outage reported")
    finally:
        anvil.resume()
    resumed_at = network.height("nbkr")
    latest_due = resumed_at // EVERY * EVERY
    network.wait_for(
        lambda: (anchors(network)["last_finalized_height"] or 0) >= latest_due, 120,
        f"anchoring caught up to height {latest_due}", seen=lambda: anchors(network),
    )  # fmt: skip
    summary = anchors(network)
    assert summary["skipped"] is not None  # said so: only the latest due height
    assert "far behind" in network.log("nbkr")
    assert all(count == 1 for count in anvil.anchors_on_chain().values())


def test_wrong_chain_unfunded_key_and_tampered_anchor_are_named(
    network: Network, anvil: Anvil
) -> None:
    start_anchoring(network, anvil.url, evm_chain_id="56")
    network.wait_for(lambda: anchor_error(network), 60, "the chain id refused")
    assert "serves EVM chain id 97, but anchor.evm_chain_id is 56" in anchors(network)["error"]
    network.wait_height(["nbkr"], 2 * EVERY)
    assert anchors(network)["anchors"] == []  # nothing was signed
    network.stop_all()
    unfunded = network.directory / "unfunded_key.json"
    address = write_anchor_key(unfunded)
    start_anchoring(network, anvil.url, key=unfunded)
    network.wait_for(lambda: anchor_error(network), 60, "the unfunded key refused")
    error = anchors(network)["error"]
    assert f"the anchor account {address} holds 0 wei" in error and "fund" in error, error
    assert anchors(network)["anchors"] == []
    # A tampered anchor: calldata for another block hash, sent by someone else.
    genesis = load_genesis(network.directory / "genesis.json")
    height = EVERY
    block = network.block("nbkr", height)
    account = Account.create()
    anvil.rpc("anvil_setBalance", [account.address, hex(10**18)])
    data = encode_calldata(AnchorPayload(chain_id=genesis.chain_id, height=height,
                                         block_hash=b"\x66" * 32,
                                         app_hash=bytes.fromhex(block["app_hash"])))  # fmt: skip
    nonce = int(anvil.rpc("eth_getTransactionCount", [account.address, "pending"]), 16)
    signed = account.sign_transaction({"type": 2, "chainId": 97, "nonce": nonce,
                                       "to": account.address, "value": 0, "data": data,
                                       "gas": 100_000, "maxFeePerGas": 10**10,
                                       "maxPriorityFeePerGas": 10**9})  # fmt: skip
    tx_hash = anvil.rpc("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])
    network.wait_for(
        lambda: (r := anvil.rpc("eth_getTransactionReceipt", [tx_hash])) and
        int(anvil.rpc("eth_getBlockByNumber", ["finalized", False])["number"], 16)
        >= int(r["blockNumber"], 16),
        60, "the tampered anchor finalized on the EVM chain",
    )  # fmt: skip
    result = verify(network, anvil.url, height, "--home", str(network.entries["nbkr"].home),
                    "--tx", tx_hash)  # fmt: skip
    assert result.returncode == 1, result.stdout
    assert "DIFFERS FROM the node's block hash" in result.stdout
    assert f"anchor of height {height} DOES NOT HOLD" in result.stdout


def test_a_stuck_anchor_is_replaced_with_the_same_nonce_and_a_higher_fee(
    network: Network, anvil: Anvil
) -> None:
    # anvil's first fee is 2 x its gas price (base fee under 1 gwei + a 1 gwei tip), so a
    # 5 gwei cap is above it and reached in a few 25% bumps, within ATTEMPTS_MAX.
    fee_cap = 5 * 10**9
    start_anchoring(network, anvil.url, replace_after_ms="1000", fee_per_gas_max_wei=str(fee_cap))
    wait_finalized(network, EVERY)
    anvil.rpc("evm_setAutomine", [False])
    anvil.rpc("evm_setIntervalMining", [0])  # no more blocks: what is sent stays out
    stopped_at = int(anvil.rpc("eth_blockNumber", []), 16)

    def replaced() -> Any:
        for record in stored_records(network).values():
            pending = record.stage.value in ("signed", "sent")
            # At the cap: no bump of at least 10% fits below it any more.
            at_cap = pending and record.attempts[-1].max_fee_per_gas * 110 > fee_cap * 100
            if at_cap and f"anchor of height {record.height} is stuck at" in network.log("nbkr"):
                return record
        return None

    stuck = network.wait_for(replaced, 60, "a stuck anchor replaced up to the fee cap",
                             seen=lambda: stored_records(network))  # fmt: skip
    assert int(anvil.rpc("eth_blockNumber", []), 16) == stopped_at  # it really was stuck
    anvil.rpc("evm_setIntervalMining", [1])  # a block every second again, as anvil.py starts it
    anchored = wait_finalized(network, stuck.height)
    record = stored_records(network)[stuck.height]
    fees = [a.max_fee_per_gas for a in record.attempts]
    tips = [a.max_priority_fee_per_gas for a in record.attempts]
    print(f"height {record.height} nonce {record.nonce}: {len(fees)} attempts, "
          f"max fees {fees}, tips {tips}")  # fmt: skip
    assert record.attempts[: len(stuck.attempts)] == stuck.attempts
    # Each replacement adds at least 10% (less, and geth or BSC would refuse it), and no
    # fee passes the cap.
    assert all(b * 100 >= a * 110 for a, b in itertools.pairwise(fees)), fees
    assert all(fee <= fee_cap for fee in fees) and fees[-1] * 110 > fee_cap * 100, fees
    assert len(fees) <= ATTEMPTS_MAX
    # Exactly one transaction of the anchor account carries this height: a replacement.
    address = Account.from_key(bytes.fromhex(ANVIL_DEV_KEY)).address.lower()
    carrying = []
    for number in range(int(anvil.rpc("eth_blockNumber", []), 16) + 1):
        for tx in anvil.rpc("eth_getBlockByNumber", [hex(number), True])["transactions"]:
            data = bytes.fromhex(tx["input"][2:])
            if tx["from"].lower() == address and data.startswith(ANCHOR_TAG):
                if decode_calldata(data).height == record.height:
                    carrying.append(tx)
    assert len(carrying) == 1, carrying
    (tx,) = carrying
    assert anchored["evm_tx_hash"] == tx["hash"] == "0x" + (record.evm_tx_hash or b"").hex()
    assert int(tx["nonce"], 16) == record.nonce
    included = [a.tx_hash for a in record.attempts].index(bytes.fromhex(tx["hash"][2:]))
    assert included >= 1, "the first attempt was included, not a replacement"
    print(f"included: attempt {included + 1}, EVM block {anchored['evm_block_number']}")
    assert int(tx["maxFeePerGas"], 16) == fees[included] > fees[0]
    for attempt in record.attempts:  # the others never reached a block
        if attempt.tx_hash != record.evm_tx_hash:
            assert anvil.rpc("eth_getTransactionReceipt", ["0x" + attempt.tx_hash.hex()]) is None
    assert anvil.anchors_on_chain()[record.height] == 1
    passed = verify(network, anvil.url, record.height, "--home",
                    str(network.entries["nbkr"].home))  # fmt: skip
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert f"anchor of height {record.height} HOLDS" in passed.stdout
