"""The LMDB store: round trips, one-transaction blocks, limits, durable consensus state.

Blocks here are real node.block encodings with real signed certificates; the ledger
effects are hand-written so that each test controls exactly what is stored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from consensus.crypto import Signer
from consensus.messages import (
    CommitCertificate,
    DurableState,
    Height,
    Round,
    Step,
    ValidatorId,
    Value,
    VoteType,
)
from consensus.wire import decode_durable_state, encode_certificate, encode_durable_state
from node.block import ZERO_HASH, Block, Header, certificate_hash, encode_block
from node.effects import AccountEntry, BlockEffects
from node.store import FORMAT_VERSION, MARKER_NAME, Store, StoreCorrupted, StoreError, StoreFull

CHAIN_ID = "som-test"
SIGNER = Signer(CHAIN_ID, ValidatorId("nbkr"), bytes(range(32)))


def digest(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


class ChainBuilder:
    """Builds consecutive real blocks with certificates, one BlockEffects at a time."""

    def __init__(self) -> None:
        self.height = 0
        self.block_hash = ZERO_HASH
        self.certificate: CommitCertificate | None = None

    def next(self, **fields: object) -> BlockEffects:
        height = self.height + 1
        header = Header(
            chain_id=CHAIN_ID,
            height=height,
            time_ms=1_700_000_000_000 + height,
            prev_block_hash=self.block_hash,
            prev_certificate_hash=certificate_hash(self.certificate),
            tx_root=ZERO_HASH,
            tx_count=0,
            app_hash=digest("app", height - 1),
            proposer="nbkr",
            validator_set_hash=digest("validators"),
            next_validator_set_hash=digest("validators"),
        )
        block = Block(header=header, txs=(), prev_certificate=self.certificate)
        block_hash = header.hash()
        vote = SIGNER.sign_vote(VoteType.PRECOMMIT, Height(height), Round(0), block_hash)
        certificate = CommitCertificate(
            height=Height(height), round=Round(0), value_id=block_hash, precommits=(vote,)
        )
        effects = BlockEffects(
            height=height,
            block_hash=block_hash,
            block_bytes=encode_block(block),
            certificate_bytes=encode_certificate(certificate),
            app_hash=digest("app", height),
            changes_hash=digest("changes", height),
            balances=(),
            tx_results=(),
            references_added=(),
            account_entries=(),
            issued_total=0,
            redeemed_total=0,
        )
        return replace(effects, **fields)  # type: ignore[arg-type]

    def advance(self, effects: BlockEffects) -> None:
        """Call after the store accepted `effects`."""
        self.height = effects.height
        self.block_hash = effects.block_hash
        self.certificate = CommitCertificate(
            height=Height(effects.height),
            round=Round(0),
            value_id=effects.block_hash,
            precommits=(
                SIGNER.sign_vote(
                    VoteType.PRECOMMIT, Height(effects.height), Round(0), effects.block_hash
                ),
            ),
        )


def commit(store: Store, chain: ChainBuilder, **fields: object) -> BlockEffects:
    effects = chain.next(**fields)
    store.commit_block(effects)
    chain.advance(effects)
    return effects


def test_new_store_is_empty_and_marked(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s", chain_id=CHAIN_ID, map_size_bytes=1 << 24) as store:
        assert store.tip.height == 0
        assert store.tip.block_hash == ZERO_HASH
        assert store.load_block(1) is None
        assert store.load_balances() == {}
        assert store.load_durable_state() is None
    assert (tmp_path / "s" / MARKER_NAME).exists()
    with Store.open(tmp_path / "s", chain_id=CHAIN_ID, map_size_bytes=1 << 24) as store:
        assert store.tip.height == 0


def test_blocks_and_ledger_state_round_trip(tmp_path: Path) -> None:
    chain = ChainBuilder()
    path = tmp_path / "s"
    ref_a, ref_b = b"r" * 20, b"q" * 48
    with Store.open(path, chain_id=CHAIN_ID, map_size_bytes=1 << 24) as store:
        first = commit(
            store,
            chain,
            balances=(("bank-a", 700), ("bank-b", 300)),
            tx_results=((digest("tx1"), b"\x01ok"), (digest("tx2"), b"\x02ok")),
            references_added=((ref_a, digest("tx1")), (ref_b, digest("tx2"))),
            issued_total=1000,
        )
        second = commit(
            store,
            chain,
            balances=(("bank-a", 0), ("bank-c", 900)),
            tx_results=((digest("tx3"), b"\x03"),),
            issued_total=1000,
            redeemed_total=100,
        )
    with Store.open(path, chain_id=CHAIN_ID, map_size_bytes=1 << 24) as store:
        store.verify(full=True)
        assert store.tip.height == 2
        assert store.tip.block_hash == second.block_hash
        assert store.tip.app_hash == second.app_hash
        assert (store.tip.issued_total, store.tip.redeemed_total) == (1000, 100)
        for effects in (first, second):
            assert store.load_block(effects.height) == effects.block_bytes
            assert store.load_block_by_hash(effects.block_hash) == effects.block_bytes
            assert store.load_certificate(effects.height) == effects.certificate_bytes
            assert store.load_height_of(effects.block_hash) == effects.height
        assert store.load_block(3) is None
        assert store.load_block_by_hash(digest("nothing")) is None
        assert store.load_tx_result(digest("tx1")) == b"\x01ok"
        assert store.load_tx_result(digest("tx3")) == b"\x03"
        assert store.load_tx_result(digest("tx9")) is None
        assert store.load_balances() == {"bank-a": 0, "bank-b": 300, "bank-c": 900}
        assert store.load_balance("bank-a") == 0
        assert store.load_balance("bank-z") is None
        # Consumed references are kept for ever, found in one read for many keys.
        assert store.load_references([ref_a, b"never-stored-key", ref_b]) == [
            digest("tx1"),
            None,
            digest("tx2"),
        ]
        assert store.load_all_references() == {ref_a: digest("tx1"), ref_b: digest("tx2")}


def test_tx_results_of_every_size_round_trip_and_are_never_overwritten(tmp_path: Path) -> None:
    """Results live in one record per height; the index finds each by its position."""
    chain = ChainBuilder()
    results = tuple((digest("r", i), bytes([i % 7]) * (i % 50)) for i in range(300))
    with Store.open(tmp_path / "s", chain_id=CHAIN_ID, map_size_bytes=1 << 24) as store:
        commit(store, chain, tx_results=results)
        commit(store, chain)  # a block without transactions still has its (empty) record
        # A stored result is never rewritten: a second result for a hash is our own bug.
        again = chain.next(tx_results=((digest("r", 5), b"later"),))
        with pytest.raises(AssertionError, match="stored twice"):
            store.commit_block(again)
    with Store.open(tmp_path / "s", chain_id=CHAIN_ID, map_size_bytes=1 << 24) as store:
        store.verify(full=True)
        assert store.entry_counts()["tx_results"] == 2
        assert store.entry_counts()["tx_index"] == 300
        for tx_hash, result in results:
            assert store.load_tx_result(tx_hash) == result
        assert store.load_tx_result(digest("r", 300)) is None


def test_exception_mid_commit_leaves_nothing(tmp_path: Path) -> None:
    chain = ChainBuilder()
    with Store.open(tmp_path / "s", chain_id=CHAIN_ID, map_size_bytes=1 << 24) as store:
        commit(store, chain, balances=(("bank-a", 5),), issued_total=5)
        counts = store.entry_counts()
        tip = store.tip
        # The block records go in first; the negative balance then fails an assertion.
        bad = chain.next(
            balances=(("bank-a", 10), ("bank-b", -5)),
            tx_results=((digest("t"), b"r"),),
            references_added=((b"k" * 20, digest("t")),),
        )
        with pytest.raises(AssertionError):
            store.commit_block(bad)
        assert store.tip == tip
        assert store.entry_counts() == counts
        assert store.load_block(2) is None
        assert store.load_height_of(bad.block_hash) is None
        assert store.load_balances() == {"bank-a": 5}
        store.commit_block(replace(bad, balances=(("bank-a", 0), ("bank-b", 5))))
        assert store.tip.height == 2
    with Store.open(tmp_path / "s", chain_id=CHAIN_ID, map_size_bytes=1 << 24) as store:
        store.verify(full=True)
        assert store.load_balances() == {"bank-a": 0, "bank-b": 5}


def test_account_entries_are_written_in_the_blocks_own_write_transaction(
    tmp_path: Path,
) -> None:
    """The entries go in last: a bad one aborts the block, its results and balances with
    it; a good block and its entries arrive together, through the one commit_block."""
    chain = ChainBuilder()
    t1, t2 = digest("t1"), digest("t2")
    with Store.open(tmp_path / "s", chain_id=CHAIN_ID, map_size_bytes=1 << 24) as store:
        commit(store, chain, balances=(("bank-a", 10),), issued_total=10)
        counts = store.entry_counts()
        good = (AccountEntry("bank-a", 0, t1, -4, 6), AccountEntry("bank-a.x", 0, t1, 4, 4))
        block = chain.next(
            balances=(("bank-a", 6), ("bank-a.x", 4)),
            tx_results=((t1, b"r"),),
            references_added=((b"k" * 20, t1),),
            issued_total=10,
        )
        with pytest.raises(AssertionError):
            store.commit_block(
                replace(block, account_entries=(*good[:1], good[1]._replace(balance_after=-1)))
            )
        assert store.entry_counts() == counts
        assert store.tip.height == 1
        assert store.load_block(2) is None
        assert store.load_balances() == {"bank-a": 10}
        store.commit_block(replace(block, account_entries=good))
        chain.advance(block)
        assert store.entry_counts()["account_entries"] == counts["account_entries"] + 2
        later = (AccountEntry("bank-a", 3, t2, 2, 8), AccountEntry("bank-a", 1, t2, -1, 5))
        commit(store, chain, account_entries=later)  # balances left out: not the store's rule
        entries = store.load_account_entries(
            "bank-a", from_height=1, from_index=0, to_height=3, count_max=10
        )
        assert entries == [(2, good[0]), (3, later[1]), (3, later[0])]  # ascending keys
        one = store.load_account_entries(
            "bank-a", from_height=3, from_index=2, to_height=3, count_max=10
        )
        assert one == [(3, later[0])]
        assert store.load_account_entries(
            "bank-a", from_height=1, from_index=0, to_height=2, count_max=1
        ) == [(2, good[0])]
        assert store.load_account_entries(
            "bank-a.x", from_height=1, from_index=0, to_height=3, count_max=10
        ) == [(2, good[1])]
        assert (
            store.load_account_entries(
                "bank-b", from_height=1, from_index=0, to_height=3, count_max=10
            )
            == []
        )


def test_height_gap_and_broken_link_are_refused(tmp_path: Path) -> None:
    chain = ChainBuilder()
    with Store.open(tmp_path / "s", chain_id=CHAIN_ID, map_size_bytes=1 << 24) as store:
        commit(store, chain)
        skipped = ChainBuilder()
        skipped.__dict__.update(chain.__dict__)
        skipped.advance(chain.next())
        with pytest.raises(AssertionError):
            store.commit_block(skipped.next())  # height 3 on a tip at 1
        fork = ChainBuilder()
        fork.advance(fork.next(app_hash=digest("fork")))
        fork.height, fork.block_hash = 1, digest("another block 1")
        with pytest.raises(AssertionError, match="link"):
            store.commit_block(fork.next())  # height 2, previous hash not the tip's
        assert store.tip.height == 1


def test_map_full_is_store_full_and_writes_nothing(tmp_path: Path) -> None:
    chain = ChainBuilder()
    map_size = 256 * 1024
    with Store.open(tmp_path / "s", chain_id=CHAIN_ID, map_size_bytes=map_size) as store:
        commit(store, chain, balances=(("bank-a", 1),), issued_total=1)
        counts = store.entry_counts()
        huge = chain.next(tx_results=tuple((digest(i), bytes(90)) for i in range(3000)))
        with pytest.raises(StoreFull, match=f"map_size_bytes={map_size}"):
            store.commit_block(huge)
        assert store.entry_counts() == counts
        assert store.tip.height == 1
        with pytest.raises(StoreFull):
            store.save_durable_state(bytes(400 * 1024))
        commit(store, chain, balances=(("bank-a", 0), ("bank-b", 1)), issued_total=1)
    with Store.open(tmp_path / "s", chain_id=CHAIN_ID, map_size_bytes=map_size) as store:
        store.verify(full=True)
        assert store.tip.height == 2
        assert store.load_durable_state() is None


def test_durable_state_round_trip(tmp_path: Path) -> None:
    value = Value(value_id=digest("v"), payload=b"payload bytes")
    states = [
        DurableState.initial(Height(1)),
        DurableState(
            signed_height=Height(7),
            signed_round=Round(3),
            signed_step=Step.PRECOMMIT,
            locked_value=value,
            locked_round=Round(2),
            valid_value=value,
            valid_round=Round(3),
        ),
    ]
    path = tmp_path / "s"
    for state in states:
        with Store.open(path, chain_id=CHAIN_ID, map_size_bytes=1 << 24) as store:
            store.save_durable_state(encode_durable_state(state))
        with Store.open(path, chain_id=CHAIN_ID, map_size_bytes=1 << 24) as store:
            loaded = store.load_durable_state()
            assert loaded is not None
            assert decode_durable_state(loaded) == state


def test_wrong_chain_and_orphaned_data_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    Store.open(path, chain_id=CHAIN_ID, map_size_bytes=1 << 24).close()
    with pytest.raises(StoreError, match="belongs to chain 'som-test'"):
        Store.open(path, chain_id="som-other", map_size_bytes=1 << 24)
    (path / MARKER_NAME).unlink()
    with pytest.raises(StoreCorrupted, match="marker"):
        Store.open(path, chain_id=CHAIN_ID, map_size_bytes=1 << 24)


def test_a_store_of_an_older_format_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "s"
    Store.open(path, chain_id=CHAIN_ID, map_size_bytes=1 << 24).close()
    marker = path / MARKER_NAME
    record = json.loads(marker.read_text())
    marker.write_text(json.dumps(record | {"format": FORMAT_VERSION - 1}))
    with pytest.raises(StoreCorrupted, match=f"a format {FORMAT_VERSION - 1} store"):
        Store.open(path, chain_id=CHAIN_ID, map_size_bytes=1 << 24)


def test_a_batch_writes_several_blocks_in_one_transaction_all_or_nothing(
    tmp_path: Path,
) -> None:
    """A node catching up stores a sync answer's blocks in one synced write (issue 12);
    inside, reads see the batch's own writes (the ledger's reference look-ups)."""
    chain = ChainBuilder()
    ref = b"r" * 20
    path = tmp_path / "s"
    with Store.open(path, chain_id=CHAIN_ID, map_size_bytes=1 << 24) as store:
        writes = store.write_count
        with store.batch("two blocks"):
            commit(store, chain, references_added=((ref, digest("tx1")),))
            assert store.load_references([ref]) == [digest("tx1")]  # not committed yet
            commit(store, chain)
        assert store.write_count == writes + 1
        assert store.tip.height == 2
        tip = store.tip
        with pytest.raises(RuntimeError), store.batch("failing"):
            store.commit_block(chain.next())
            raise RuntimeError("the node fails before the batch commits")
        assert store.tip == tip
        assert store.load_block(3) is None
    with Store.open(path, chain_id=CHAIN_ID, map_size_bytes=1 << 24) as store:
        store.verify(full=True)
        assert store.tip.height == 2
        assert store.load_references([ref]) == [digest("tx1")]
