"""Property tests of the ledger against a plain model, and reachability of every code."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.messages import Evidence
from node.errors import BlockError, RefusalCode, TxRefused
from node.governance import Freeze, Reinstate, SetValidators, Suspend
from node.ledger import EXPIRY_HEIGHTS_MAX, Ledger, decode_tx_result
from node.mempool import Mempool
from node.tx import (
    AMOUNT_MAX,
    Issue,
    Payout,
    Redeem,
    Transfer,
    decode_tx,
    sign_issue,
    sign_payout,
    sign_redeem,
    sign_transfer,
)
from tests.unit.ledger_support import (
    CHAIN_ID,
    ISSUER,
    OFFICERS,
    VALIDATORS,
    Chain,
    admit_action,
    equivocation,
    evidence_tx,
    govern,
    issue,
    key_of,
    make_genesis,
    payout,
    redeem,
    rotate,
    transfer,
    vote,
)
from tests.unit.test_ledger import codes_of

ACCOUNTS = ["nbkr", "val-b", "bank-e", "bank-f", "bank-e.payroll", "bank-f.savings"]
SIGNERS = ["nbkr", "val-b", "bank-e", "bank-f"]
UETRS = [bytes([i]) * 16 for i in range(6)]  # few, so that replays happen often
START = [("bank-e", 5_000), ("bank-f", 5_000), ("nbkr", 5_000)]

amounts = st.one_of(st.integers(1, 3_000), st.integers(1, AMOUNT_MAX))


@st.composite
def remittances(
    draw: st.DrawFn, signer: str, credited: list[str]
) -> tuple[str, dict[str, bytes] | None]:
    """No remittance, one sealed to its banks, or one sealed to the signer alone."""
    text = draw(st.sampled_from(["", "", "inv 1"]))
    if not text:
        return text, None
    if draw(st.booleans()):
        return text, make_genesis().remittance_keys(signer, credited)
    return text, {signer: bytes(key_of(signer).verify_key)}  # misaddressed


@st.composite
def signed_txs(draw: st.DrawFn) -> bytes:
    """A signed transaction of any kind, often unauthorized, underfunded, replayed or
    with a remittance sealed to the wrong banks."""
    kind = draw(st.sampled_from(["transfer", "transfer", "payout", "issue", "redeem"]))
    signer = draw(st.sampled_from(SIGNERS))
    uetr = draw(st.sampled_from(UETRS))
    expiry = draw(st.integers(1, 12))
    key = key_of(signer)
    if kind == "transfer":
        from_, to = draw(st.lists(st.sampled_from(ACCOUNTS), min_size=2, max_size=2, unique=True))
        remittance, recipients = draw(remittances(signer, [to]))
        return sign_transfer(
            key,
            CHAIN_ID,
            signer=signer,
            uetr=uetr,
            expiry_height=expiry,
            from_account=from_,
            to_account=to,
            amount=draw(amounts),
            remittance=remittance,
            recipients=recipients,
        )
    if kind == "payout":
        from_ = draw(st.sampled_from(ACCOUNTS))
        others = [a for a in ACCOUNTS if a != from_]
        legs = draw(
            st.lists(
                st.tuples(st.sampled_from(others), st.integers(1, 2_000)), min_size=1, max_size=4
            )
        )
        remittance, recipients = draw(remittances(signer, [to for to, _ in legs]))
        return sign_payout(
            key,
            CHAIN_ID,
            signer=signer,
            uetr=uetr,
            expiry_height=expiry,
            from_account=from_,
            legs=legs,
            remittance=remittance,
            recipients=recipients,
        )
    account = draw(st.sampled_from(ACCOUNTS))
    if kind == "issue":
        return sign_issue(
            key,
            CHAIN_ID,
            signer=signer,
            uetr=uetr,
            expiry_height=expiry,
            to_account=account,
            amount=draw(amounts),
            reserve_reference="r",
        )
    return sign_redeem(
        key,
        CHAIN_ID,
        signer=signer,
        uetr=uetr,
        expiry_height=expiry,
        from_account=account,
        amount=draw(amounts),
        reserve_reference="r",
    )


class Model:
    """The ledger rules written as plainly as possible, to compare against."""

    def __init__(self) -> None:
        self.balances = dict.fromkeys(ACCOUNTS, 0)
        for account, amount in START:
            self.balances[account] += amount
        self.supply = sum(self.balances.values())
        self.consumed: set[tuple[str, bytes]] = set()  # for ever

    def settleable(self, txs: list[bytes], height: int) -> list[bytes]:
        """The transactions a valid block at `height` may carry, in order: not expired,
        not too far, (signer, UETR) neither consumed nor repeated."""
        keys = set(self.consumed)
        kept = []
        for raw in txs:
            tx = decode_tx(raw, CHAIN_ID)
            key = (tx.signer, tx.uetr)
            if height <= tx.expiry_height <= height + EXPIRY_HEIGHTS_MAX and key not in keys:
                keys.add(key)
                kept.append(raw)
        return kept

    def apply(self, raw: bytes) -> RefusalCode | None:
        tx = decode_tx(raw, CHAIN_ID)
        owner = {a: a.split(".")[0] for a in ACCOUNTS}
        self.consumed.add((tx.signer, tx.uetr))
        debits: dict[str, int] = {}
        credits: dict[str, int] = {}
        if isinstance(tx, Transfer | Payout):
            legs = [(tx.to_account, tx.amount)] if isinstance(tx, Transfer) else list(tx.legs)
            if owner[tx.from_account] != tx.signer:
                return RefusalCode.NOT_AUTHORIZED
            banks = {tx.signer, ISSUER, *(owner[to] for to, _ in legs)}
            if tx.envelope is not None and tx.envelope.recipients != tuple(sorted(banks)):
                return RefusalCode.MISADDRESSED
            debits[tx.from_account] = sum(amount for _, amount in legs)
            for to, amount in legs:
                credits[to] = credits.get(to, 0) + amount
        elif tx.signer != ISSUER:
            return RefusalCode.NOT_AUTHORIZED
        elif isinstance(tx, Issue):
            if self.supply + tx.amount > AMOUNT_MAX:
                return RefusalCode.SUPPLY_LIMIT
            credits[tx.to_account] = tx.amount
            self.supply += tx.amount
        else:
            assert isinstance(tx, Redeem)
            debits[tx.from_account] = tx.amount
        for account, amount in debits.items():
            if self.balances[account] < amount:
                return RefusalCode.INSUFFICIENT_FUNDS
            self.balances[account] -= amount
            if isinstance(tx, Redeem):
                self.supply -= amount
        for account, amount in credits.items():
            self.balances[account] += amount
        return None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(signed_txs(), max_size=8), min_size=1, max_size=8))
def test_ledger_matches_the_model_and_conserves_money(blocks: list[list[bytes]]) -> None:
    chain = Chain(Ledger(make_genesis(START)))
    model = Model()
    for height, txs in enumerate(blocks, start=1):
        valid = model.settleable(txs, height)
        if valid != txs:
            with pytest.raises(BlockError):
                chain.ledger.validate_block(chain.next_block(txs))
        expected = [model.apply(raw) for raw in valid]
        effects = chain.settle(valid)
        assert codes_of(effects) == expected
        ledger = chain.ledger
        assert {a: ledger.balances[a] for a in ACCOUNTS} == model.balances
        assert all(balance >= 0 for balance in ledger.balances.values())
        assert sum(ledger.balances.values()) == ledger.issued_total - ledger.redeemed_total
        assert ledger.issued_total - ledger.redeemed_total == model.supply
        for tx_hash, encoded in effects.tx_results:
            assert decode_tx_result(encoded).height == height
            assert len(tx_hash) == 32


@settings(max_examples=100)
@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=0),
        st.integers(min_value=AMOUNT_MAX + 1, max_value=2**80),
        st.decimals(allow_nan=False).map(str),
    ),
    st.sampled_from(["transfer", "issue", "redeem", "payout"]),
)
def test_no_float_or_bool_is_ever_money(amount: object, kind: str) -> None:
    builders: dict[str, Callable[[], bytes]] = {
        "transfer": lambda: transfer("bank-e", "bank-e", "bank-f", amount),  # type: ignore[arg-type]
        "issue": lambda: issue("nbkr", "bank-e", amount),  # type: ignore[arg-type]
        "redeem": lambda: redeem("nbkr", "bank-e", amount),  # type: ignore[arg-type]
        "payout": lambda: payout("bank-e", "bank-e", [("bank-f", amount)]),  # type: ignore[list-item]
    }
    with pytest.raises(TxRefused) as info:
        builders[kind]()
    assert info.value.code is RefusalCode.INVALID_AMOUNT


def refusal_of(action: Callable[[], object]) -> RefusalCode:
    with pytest.raises(TxRefused) as info:
        action()
    return info.value.code


def settled_code(txs: list[bytes], *, blocks_before: int = 0) -> RefusalCode | None:
    chain = Chain(Ledger(make_genesis(START)))
    for _ in range(blocks_before):
        chain.settle([])
    return codes_of(chain.settle(txs))[-1]


def sealed_to_the_sender_alone() -> bytes:
    """A remittance the receiving bank and the issuer cannot read: MISADDRESSED."""
    return sign_transfer(
        key_of("bank-e"),
        CHAIN_ID,
        signer="bank-e",
        uetr=bytes(16),
        expiry_height=10,
        from_account="bank-e",
        to_account="bank-f",
        amount=1,
        remittance="invoice 7",
        recipients={"bank-e": bytes(key_of("bank-e").verify_key)},
    )


def test_every_refusal_code_is_reachable() -> None:
    ledger = Ledger(make_genesis(START))
    chain = Chain(ledger)
    chain.settle([])
    uetr = bytes(16)
    first = transfer("bank-e", "bank-e", "bank-f", 1, uetr=uetr)
    expired = transfer("bank-e", "bank-e", "bank-f", 1, expiry_height=1)
    three = tuple((v, 1) for v in VALIDATORS[:3])
    bank_f_pays = transfer("bank-f", "bank-f", "bank-e", 1)
    produced = {
        refusal_of(lambda: decode_tx(b"\x00" * 70, CHAIN_ID)),
        refusal_of(lambda: decode_tx(transfer("bank-e", "bank-e", "bank-f", 1), "other")),
        refusal_of(lambda: ledger.check_tx(bytes(64) + transfer("bank-e", "bank-e", "x", 1)[64:])),
        refusal_of(lambda: transfer("bank-e", "bank-e", "bank-f", 0)),
        refusal_of(lambda: transfer("bank-e", "bank-e", "bank-e", 1)),
        refusal_of(lambda: payout("bank-e", "bank-e", [])),
        settled_code([transfer("bank-f", "bank-e", "bank-f", 1)]),
        settled_code([transfer("bank-e", "bank-e", "nobody", 1)]),
        settled_code([transfer("bank-e", "bank-e", "bank-f", 5_001)]),
        settled_code([sealed_to_the_sender_alone()]),
        refusal_of(
            lambda: pool_holding(first).add(transfer("bank-e", "bank-e", "bank-f", 2, uetr=uetr))
        ),
        refusal_of(lambda: Mempool(ledger, txs_max=1).add(expired)),
        refusal_of(
            lambda: Mempool(ledger, txs_max=1).add(
                transfer("bank-e", "bank-e", "bank-f", 1, expiry_height=20_000)
            )
        ),
        settled_code([issue("nbkr", "bank-e", AMOUNT_MAX)]),
        refusal_of(lambda: pool_holding(first).add(transfer("bank-e", "bank-e", "bank-f", 3))),
        refusal_of(lambda: Mempool(ledger, txs_max=1).add(first, catching_up=True)),
        # Governance (tests/unit/test_governance.py has each rule in full).
        settled_code([govern(Suspend(participant_id="bank-f"), approvers=OFFICERS[:1])]),
        settled_code([rotate("bank-e", "bank-e-2", new_key_signs=False)]),
        settled_code([govern(SetValidators(validators=three, allow_below_four=False))]),
        settled_code([govern(Suspend(participant_id="bank-f")), bank_f_pays]),
        settled_code([govern(Freeze(account="bank-e")), transfer("bank-e", "bank-e", "bank-f", 1)]),
        settled_code([govern(admit_action("bank-e"))]),
        settled_code([rotate("bank-e", "bank-f")]),
        settled_code([govern(Suspend(participant_id="nobody"))]),
        settled_code([govern(Suspend(participant_id="nbkr"))]),
        settled_code([govern(Reinstate(participant_id="bank-e"))]),
        # Evidence (tests/unit/test_evidence.py).
        settled_code([evidence_tx(equivocation(voter="bank-e"))]),
        settled_code([evidence_tx(equivocation()), evidence_tx(equivocation(), signer="val-c")]),
        settled_code([evidence_tx(Evidence(first=vote(bytes(32)), second=vote(bytes(32))))]),
        settled_code([evidence_tx(equivocation(height=10), expiry_height=20)]),
    }
    assert produced == set(RefusalCode)


def pool_holding(tx: bytes) -> Mempool:
    """A mempool with room for one transaction, holding `tx`."""
    mempool = Mempool(Ledger(make_genesis(START)), txs_max=1)
    mempool.add(tx)
    return mempool
