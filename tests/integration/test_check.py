"""`somnet check`: a real store of settled, signed blocks, damaged the way a bad disk or a
careless hand would (checksums fixed up, so only the check's replay can tell), and the
check names each fault."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lmdb
import pytest

from cli.main import main
from consensus.messages import DurableState, Height
from consensus.wire import encode_durable_state
from node.block import decode_block, encode_block
from node.check import check_home
from node.checksum import seal, unseal
from node.effects import PoolChanges
from node.errors import RefusalCode
from node.ledger import Ledger, decode_tx_result
from node.mempool import Dropped
from node.store import DATA_NAME, MARKER_NAME, Store, account_entry_key, height_key
from node.tx import decode_tx
from tests.unit.ledger_support import (
    CHAIN_ID,
    Chain,
    genesis_doc,
    issue,
    make_genesis,
    payout,
    redeem,
    transfer,
)

MAP_SIZE = 1 << 24
ISSUANCE = (("bank-e", 1_000_000), ("bank-f", 500_000), ("bank-e.payroll", 20_000))
NODE_TOML = """\
[node]
id = "bank-e"
[p2p]
listen = "127.0.0.1:7001"
[api]
listen = "127.0.0.1:8001"
"""
RESULT_SIZE = 13  # node.ledger.TxResult's encoding


def blocks_of_transactions() -> list[list[bytes]]:
    """Five blocks: applied and refused transfers, an issue, a payout, a redemption and
    an empty block."""
    return [
        [
            transfer("bank-e", "bank-e", "bank-f", 100),
            transfer("bank-f", "bank-f", "bank-e", 10_000_000),  # INSUFFICIENT_FUNDS
            issue("nbkr", "bank-f", 5_000),
        ],
        [
            payout("bank-e", "bank-e", [("bank-f", 10), ("bank-f.savings", 20)]),
            redeem("nbkr", "bank-f", 300),
        ],
        [],
        [transfer("bank-e", "bank-e.payroll", "bank-f", 1_000 + i) for i in range(3)],
        [transfer("bank-f", "bank-f", "bank-f.savings", 7)],
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """A node's home with a store of settled blocks, and what the chain settled."""

    home: Path
    ledger: Ledger
    pool_tx_hash: bytes  # kept in the durable pool
    dropped_tx_hash: bytes  # its fate is recorded

    @property
    def data(self) -> Path:
        return self.home / "data"


def build_node(home: Path) -> Node:
    home.mkdir()
    (home / "node.toml").write_text(NODE_TOML)
    (home / "genesis.json").write_text(json.dumps(genesis_doc(ISSUANCE)))
    chain = Chain(Ledger(make_genesis(ISSUANCE)))
    pending = decode_tx(transfer("bank-e", "bank-e", "bank-f", 5, expiry_height=900), CHAIN_ID)
    expired = decode_tx(transfer("bank-f", "bank-f", "bank-e", 6, expiry_height=2), CHAIN_ID)
    with Store.open(home / "data", chain_id=CHAIN_ID, map_size_bytes=MAP_SIZE) as store:
        for txs in blocks_of_transactions():
            store.commit_block(chain.settle(txs))
        store.save_pool([(pending.tx_hash, pending.raw), (expired.tx_hash, expired.raw)])
        fate = Dropped(code=RefusalCode.EXPIRED, height=3, first_tx_hash=None)
        store.save_pool_changes(
            PoolChanges(removed=(expired.tx_hash,), dropped=((expired.tx_hash, fate.encode()),))
        )
        store.save_durable_state(encode_durable_state(DurableState.initial(Height(6))))
    return Node(
        home=home,
        ledger=chain.ledger,
        pool_tx_hash=pending.tx_hash,
        dropped_tx_hash=expired.tx_hash,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Node:
    return build_node(tmp_path_factory.mktemp("built") / "node")


@pytest.fixture
def node(built: Node, tmp_path: Path) -> Node:
    """A fresh copy of the built node, free to damage."""
    home = tmp_path / "node"
    shutil.copytree(built.home, home)
    return Node(
        home=home,
        ledger=built.ledger,
        pool_tx_hash=built.pool_tx_hash,
        dropped_tx_hash=built.dropped_tx_hash,
    )


def rewrite(
    node: Node, db_name: bytes, key: bytes, change: Callable[[bytes], bytes | None]
) -> None:
    """Change one record in the LMDB file and fix up its checksum, as damage that a
    checksum cannot catch would; `change` returns the new value, or None to delete."""
    env = lmdb.open(str(node.data), max_dbs=16, map_size=MAP_SIZE)
    try:
        with env.begin(write=True) as txn:
            db = env.open_db(db_name, txn=txn, create=False)
            record = txn.get(key, db=db)
            assert record is not None, (db_name, key)
            value = change(unseal(db_name, key, record))
            if value is None:
                assert txn.delete(key, db=db)
            else:
                txn.put(key, seal(db_name, key, value), db=db)
    finally:
        env.close()


def check_lines(node: Node, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """Run `somnet check` in this process: its exit status and output lines."""
    status = main(["check", "--home", str(node.home)])
    return status, capsys.readouterr().out.splitlines()


def file_digests(path: Path) -> dict[str, bytes]:
    return {
        name: hashlib.sha256((path / name).read_bytes()).digest()
        for name in (DATA_NAME, MARKER_NAME)
    }


def test_a_clean_store_checks_ok_and_is_not_written(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    before = file_digests(node.data)
    report = check_home(node.home)
    assert report.problems == ()
    assert report.ok
    transactions = sum(len(txs) for txs in blocks_of_transactions())
    assert (report.blocks, report.transactions, report.references) == (5, transactions, 9)
    assert report.accounts == len(node.ledger.balances)
    status, lines = check_lines(node, capsys)
    assert status == 0
    assert lines == [f"checked 5 blocks, {transactions} transactions, 8 accounts, 9 references: OK"]
    assert file_digests(node.data) == before


def add_to_balance(amount: int) -> Callable[[bytes], bytes]:
    return lambda value: (int.from_bytes(value, "big") + amount).to_bytes(8, "big")


def test_a_balance_moved_between_two_accounts_is_reported_naming_both(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sum of balances still matches the totals: only the replay tells."""
    moved = 250
    rewrite(node, b"balances", b"bank-e", add_to_balance(-moved))
    rewrite(node, b"balances", b"bank-f", add_to_balance(moved))
    status, lines = check_lines(node, capsys)
    assert status == 11  # FatalReason.STORE_CORRUPTED
    e, f = node.ledger.balances["bank-e"], node.ledger.balances["bank-f"]
    assert lines[:-1] == [
        f"balance bank-e: stored {e - moved}, replay {e}",
        f"balance bank-f: stored {f + moved}, replay {f}",
    ]
    assert lines[-1].endswith(": 2 problems")


def set_result_code(index: int, code: int) -> Callable[[bytes], bytes]:
    """Rewrite entry `index` of a per-height tx results record (node.store layout)."""

    def change(record: bytes) -> bytes:
        count = int.from_bytes(record[:4], "big")
        at = 4 + 36 * count + RESULT_SIZE * index
        return record[:at] + bytes([code]) + record[at + 1 :]

    return change


def test_a_rewritten_tx_result_is_reported_naming_the_height(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    rewrite(node, b"tx_results", height_key(1), set_result_code(0, RefusalCode.INSUFFICIENT_FUNDS))
    status, lines = check_lines(node, capsys)
    assert status == 11
    assert lines[:-1] == [
        "height 1: tx_results entry 0 differs: stored INSUFFICIENT_FUNDS, replay applied"
    ]
    with Store.open_readonly(node.data, chain_id=CHAIN_ID) as store:
        stored = store.load_tx_results(1)
    assert stored is not None
    assert decode_tx_result(stored[0][1]).code is RefusalCode.INSUFFICIENT_FUNDS  # as rewritten


def test_a_tx_results_record_that_does_not_add_up_is_reported(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    rewrite(node, b"tx_results", height_key(4), lambda record: record[:-1])
    status, lines = check_lines(node, capsys)
    assert status == 11
    assert lines[:-1] == [
        f"height 4: store at {node.data}: database 'tx_results' key {height_key(4).hex()}: "
        "the record's layout does not add up"
    ]


def test_a_deleted_reference_is_reported(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    with Store.open_readonly(node.data, chain_id=CHAIN_ID) as store:
        key, tx_hash = sorted(store.load_all_references().items())[3]
    rewrite(node, b"references", key, lambda value: None)
    status, lines = check_lines(node, capsys)
    assert status == 11
    assert len(lines) == 2
    assert lines[0].startswith(f"reference {key[16:].decode()}/")
    assert lines[0].endswith(f": missing; the replay consumed it with tx {tx_hash.hex()}")


def test_an_edited_account_entry_is_reported_naming_its_account_height_and_index(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    """A statement line whose running balance was changed, checksum fixed up: the sum
    of balances and every app hash still agree, only the replay tells."""
    key = account_entry_key("bank-e", 1, 0)  # the first transfer: bank-e pays 100
    with Store.open_readonly(node.data, chain_id=CHAIN_ID) as store:
        [(_, entry)] = store.load_account_entries(
            "bank-e", from_height=1, from_index=0, to_height=1, count_max=2
        )
    assert (entry.delta, entry.balance_after) == (-100, 999_900)
    rewrite(node, b"account_entries", key, lambda value: value[:-8] + (1).to_bytes(8, "big"))
    status, lines = check_lines(node, capsys)
    assert status == 11
    tx = f"tx {entry.tx_hash.hex()} amount -100"
    assert lines[:-1] == [
        f"entry bank-e height 1 index 0: stored {tx} balance_after 1, "
        f"replay {tx} balance_after 999900"
    ]


def test_a_missing_and_an_extra_account_entry_are_reported(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    """An entry moved to another height: the old key is missing, the new one extra."""
    old, new = account_entry_key("bank-f", 5, 0), account_entry_key("bank-f", 3, 0)
    env = lmdb.open(str(node.data), max_dbs=16, map_size=MAP_SIZE)
    try:
        with env.begin(write=True) as txn:
            db = env.open_db(b"account_entries", txn=txn, create=False)
            record = txn.get(old, db=db)
            assert record is not None
            value = unseal(b"account_entries", old, record)
            assert txn.delete(old, db=db)
            txn.put(new, seal(b"account_entries", new, value), db=db)
    finally:
        env.close()
    status, lines = check_lines(node, capsys)
    assert status == 11
    assert len(lines) == 3
    assert lines[0].startswith("entry bank-f height 3 index 0: stored tx ")
    assert lines[0].endswith("but no applied transaction of the chain moves this account there")
    assert lines[1].startswith("entry bank-f height 5 index 0: missing; the replay has tx ")


def swap_a_transaction(block_bytes: bytes) -> bytes:
    block = decode_block(block_bytes)
    txs = (transfer("bank-e", "bank-e", "bank-f", 99_999), *block.txs[1:])
    return encode_block(dataclasses.replace(block, txs=txs))


def change_the_time(block_bytes: bytes) -> bytes:
    block = decode_block(block_bytes)
    header = dataclasses.replace(block.header, time_ms=block.header.time_ms + 1)
    return encode_block(dataclasses.replace(block, header=header))


@pytest.mark.parametrize(
    ("change", "messages"),
    [
        (
            swap_a_transaction,
            ["the block's transactions do not match its header's tx_root"],
        ),
        (
            change_the_time,
            ["the block's hash ", "its certificate commits height 2 block "],
        ),
    ],
)
def test_an_altered_block_is_reported(
    node: Node,
    capsys: pytest.CaptureFixture[str],
    change: Callable[[bytes], bytes],
    messages: list[str],
) -> None:
    rewrite(node, b"blocks", height_key(2), change)
    status, lines = check_lines(node, capsys)
    assert status == 11
    problems = lines[:-1]
    assert len(problems) == len(messages) + 1
    for line, message in zip(problems, messages, strict=False):
        assert line.startswith(f"height 2: {message}")
    assert problems[-1].startswith("height 2: replay stopped: the block or its certificate is")
    assert problems[-1].endswith("nothing stored after height 1 is compared with the replay")


def test_a_checksum_mismatch_is_reported_with_its_message(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    """A block damaged without fixing its checksum: the store's own message, no traceback."""
    env = lmdb.open(str(node.data), max_dbs=16, map_size=MAP_SIZE)
    with env.begin(write=True) as txn:
        db = env.open_db(b"blocks", txn=txn, create=False)
        record = txn.get(height_key(4), db=db)
        txn.put(height_key(4), record[:40] + bytes([record[40] ^ 1]) + record[41:], db=db)
    env.close()
    status, lines = check_lines(node, capsys)
    assert status == 11
    assert lines[0] == (
        f"height 4: store at {node.data}: checksum mismatch in database 'blocks' key "
        f"{height_key(4).hex()}; the node must stop"
    )
    assert lines[1].startswith("height 4: replay stopped: the block or its certificate cannot")


def test_damaged_pool_and_dropped_records_are_reported(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    rewrite(node, b"pool", node.pool_tx_hash, lambda raw: raw[:-1])
    rewrite(node, b"dropped", node.dropped_tx_hash, lambda fate: bytes([3]) + fate[1:])
    status, lines = check_lines(node, capsys)
    assert status == 11
    assert len(lines) == 3
    assert lines[0].startswith(f"pool {node.pool_tx_hash.hex()}: does not decode: MALFORMED")
    assert lines[1] == (
        f"dropped {node.dropped_tx_hash.hex()}: does not decode: corrupt dropped record: code 3"
    )


def somnet(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed command (`make install`), as an operator runs it."""
    command = Path(sys.executable).with_name("somnet")
    assert command.exists(), f"{command} is not installed: run make install"
    return subprocess.run(
        [str(command), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_installed_command(node: Node, tmp_path: Path) -> None:
    clean = somnet("check", "--home", str(node.home))
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.endswith("references: OK\n")
    rewrite(node, b"balances", b"bank-f", lambda value: (1).to_bytes(8, "big"))
    damaged = somnet("check", "--home", str(node.home), "--json")
    assert damaged.returncode == 11, damaged.stderr
    document = json.loads(damaged.stdout)
    assert document["ok"] is False
    assert document["problem_count"] == 1
    assert document["problems"] == [
        {
            "subject": "balance bank-f",
            "database": "balances",
            "key": "bank-f",
            "message": f"stored 1, replay {node.ledger.balances['bank-f']}",
        }
    ]
    (node.home / "genesis.json").write_text('{"chain_id": "x"}')
    bad_genesis = somnet("check", "--home", str(node.home))
    assert bad_genesis.returncode == 10  # FatalReason.CONFIG
    assert "genesis.json" in bad_genesis.stderr
    no_home = somnet("check", "--home", str(tmp_path / "nowhere"))
    assert no_home.returncode == 10
    assert "node.toml: file not found" in no_home.stderr
