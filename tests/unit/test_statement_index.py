"""The statement index (issue 9), property-tested over random chains of transfers,
payouts, issues and redemptions (many refused, some replayed), settled by the real ledger
into a real store: every account's full statement is a running balance from its genesis
balance to the ledger's, and pages of any size give the same entries as one page."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.ledger import Ledger, decode_tx_result
from node.statement import Reader, account_statement
from node.store import Store
from tests.unit.ledger_support import CHAIN_ID, Chain, key_of, make_genesis
from tests.unit.test_ledger_properties import ACCOUNTS, START, Model, signed_txs

READER = Reader(participant_id="nbkr", signing_key=key_of("nbkr"))


def settle_into_store(store: Store, blocks: list[list[bytes]]) -> tuple[Ledger, set[bytes]]:
    """Settle the valid part of each block and commit it; the ledger and the hashes of
    the transactions it applied."""
    chain = Chain(Ledger(make_genesis(START)))
    model = Model()
    applied: set[bytes] = set()
    for height, txs in enumerate(blocks, start=1):
        valid = model.settleable(txs, height)
        for raw in valid:
            model.apply(raw)
        effects = chain.settle(valid, time_ms=1_000 + height)
        store.commit_block(effects)
        applied |= {h for h, r in effects.tx_results if decode_tx_result(r).code is None}
    return chain.ledger, applied


def paged(store: Store, account: str, height: int, limit: int) -> list[dict[str, Any]]:
    """The whole statement, page by page, following each page's cursor."""
    entries: list[dict[str, Any]] = []
    from_height, from_index = 1, 0
    for _ in range(1_000):  # a bound: a cursor that never ends is a bug
        page = account_statement(
            store,
            CHAIN_ID,
            account,
            from_height=from_height,
            from_index=from_index,
            to_height=height,
            limit=limit,
            reader=READER,
        )
        assert len(page["transactions"]) <= limit
        entries += page["transactions"]
        if page["next_from_height"] is None:
            return entries
        assert len(page["transactions"]) == limit
        from_height, from_index = page["next_from_height"], page["next_from_index"]
    raise AssertionError("the pages never ended")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(signed_txs(), max_size=8), min_size=1, max_size=6),
    st.integers(1, 3),
)
def test_running_balances_end_at_the_ledgers_and_pages_add_up(
    blocks: list[list[bytes]], limit: int
) -> None:
    genesis_balances = dict(Ledger(make_genesis(START)).balances)
    with tempfile.TemporaryDirectory() as directory:
        store = Store.open(Path(directory) / "s", chain_id=CHAIN_ID, map_size_bytes=1 << 24)
        with store:
            ledger, applied = settle_into_store(store, blocks)
            height = ledger.height
            listed: set[bytes] = set()
            for account in ACCOUNTS:
                whole = account_statement(
                    store,
                    CHAIN_ID,
                    account,
                    from_height=1,
                    from_index=0,
                    to_height=height,
                    limit=10_000,
                    reader=READER,
                )
                assert whole["next_from_height"] is None
                entries = whole["transactions"]
                balance = genesis_balances[account]
                for entry in entries:
                    delta = entry["amount"] if entry["direction"] == "credit" else -entry["amount"]
                    assert entry["amount"] > 0
                    assert entry["balance_after"] == balance + delta, (account, entry)
                    balance = entry["balance_after"]
                    assert entry["status"] == "final"
                    listed.add(bytes.fromhex(entry["tx_hash"]))
                assert balance == ledger.balances[account]
                positions = [(e["height"], e["index"]) for e in entries]
                assert positions == sorted(set(positions))  # ascending, one per tx
                assert paged(store, account, height, limit) == entries
            assert listed == applied  # every applied tx moves an account; no refused one
