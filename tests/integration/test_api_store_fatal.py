"""A damaged store found while serving the API stops the node with its fatal exit status
(11), never a 500 with the node running on (issue 8 finding 10: every error is JSON; a
corrupted store is no error to answer but the node's own to stop on)."""

from __future__ import annotations

import mmap
from pathlib import Path

import pytest

from cli.api_client import ApiError
from node.fatal import FatalReason
from node.store import DATA_NAME
from node.tx import decode_tx
from tests.integration.network import Network, dump_logs

pytestmark = pytest.mark.network


def flip_in_place(data_file: Path, pattern: bytes) -> int:
    """Flip a bit in every copy of `pattern` without truncating the file the node maps."""
    with data_file.open("r+b") as f, mmap.mmap(f.fileno(), 0) as mapped:
        count = 0
        start = mapped.find(pattern)
        while start != -1:
            mapped[start + len(pattern) // 2] ^= 0x01
            count += 1
            start = mapped.find(pattern, start + 1)
        mapped.flush()
    return count


def test_a_corrupted_block_read_by_the_api_stops_the_node_with_status_11(tmp_path: Path) -> None:
    network = Network.create(tmp_path, validators=1, banks=1)
    validator, bank = network.validators[0], network.banks[0]
    try:
        network.start()
        network.wait_height([validator, bank], 1)
        tx = network.sign_transfer(bank, validator, 5)
        status = network.wait_final(bank, network.submit(bank, tx))
        height = int(status["height"])
        uetr = decode_tx(tx, network.genesis.chain_id).uetr  # inside the stored block
        data_file = network.entries[validator].home / "data" / DATA_NAME
        assert flip_in_place(data_file, uetr) >= 1
        with pytest.raises(ApiError) as info:
            network.block(validator, height)
        assert (info.value.status, info.value.body.get("code")) == (503, "STORE_FAILED")
        process = network.processes.pop(validator)
        returncode = process.wait(timeout=30)  # a deadline: raises if it does not stop
        assert returncode == FatalReason.STORE_CORRUPTED, dump_logs(network)
        log = network.log(validator)
        assert "fatal STORE_CORRUPTED" in log
        assert "Traceback" not in log
    finally:
        network.stop_all()
