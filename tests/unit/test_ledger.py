"""Ledger rules: settlement, refusals, replay, expiry, restore, block validation."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from consensus.wire import encode_certificate
from node.block import ZERO_HASH, Block
from node.effects import BlockEffects
from node.errors import BlockError, NodeError, RefusalCode, TxRefused
from node.ledger import (
    EXPIRY_HEIGHTS_MAX,
    Ledger,
    MemoryReferences,
    TxResult,
    decode_tx_result,
)
from node.tx import AMOUNT_MAX, Transfer, decode_tx
from tests.unit.ledger_support import (
    CHAIN_ID,
    VALIDATORS,
    Chain,
    certify,
    issue,
    make_genesis,
    new_uetr,
    payout,
    redeem,
    transfer,
)


def results_of(effects: BlockEffects) -> list[TxResult]:
    return [decode_tx_result(encoded) for _, encoded in effects.tx_results]


def codes_of(effects: BlockEffects) -> list[RefusalCode | None]:
    return [r.code for r in results_of(effects)]


@pytest.fixture
def chain() -> Chain:
    return Chain(Ledger(make_genesis([("bank-e", 10_000), ("nbkr", 1_000)])))


def test_genesis_state(chain: Chain) -> None:
    ledger = chain.ledger
    assert ledger.height == 0
    assert ledger.balances["bank-e"] == 10_000
    assert ledger.balances["bank-e.payroll"] == 0
    assert ledger.issued_total == 11_000
    assert ledger.redeemed_total == 0
    assert ledger.block_hash == ZERO_HASH


def test_transfer_moves_money_and_reports_changes(chain: Chain) -> None:
    effects = chain.settle([transfer("bank-e", "bank-e", "bank-f", 2_500)])
    assert effects.height == 1
    assert codes_of(effects) == [None]
    assert effects.balances == (("bank-e", 7_500), ("bank-f", 2_500))
    assert effects.issued_total == 11_000
    assert len(effects.references_added) == 1
    assert effects.block_hash == chain.blocks[0][0].header.hash()
    assert effects.app_hash == chain.ledger.app_hash


def test_refused_tx_changes_no_balance_and_is_recorded(chain: Chain) -> None:
    effects = chain.settle([transfer("bank-e", "bank-e", "bank-f", 10_001)])
    assert codes_of(effects) == [RefusalCode.INSUFFICIENT_FUNDS]
    assert effects.balances == ()
    assert chain.ledger.balances["bank-e"] == 10_000


def consumed(chain: Chain, tx: bytes) -> bytes | None:
    decoded = decode_tx(tx, CHAIN_ID)
    return chain.ledger.lookup_reference(decoded)


def test_a_settled_uetr_makes_any_later_block_carrying_it_invalid(chain: Chain) -> None:
    uetr = new_uetr()
    first = transfer("bank-e", "bank-e", "bank-f", 100, uetr=uetr)
    chain.settle([first])
    assert consumed(chain, first) == decode_tx(first, CHAIN_ID).tx_hash
    other = transfer("bank-e", "bank-e", "bank-f", 200, uetr=uetr)
    for txs in ([first], [other]):
        with pytest.raises(BlockError, match="consumed by tx"):
            chain.ledger.validate_block(chain.next_block(txs))
    assert chain.ledger.balances["bank-e"] == 9_900


def test_a_block_with_one_uetr_twice_is_invalid(chain: Chain) -> None:
    uetr = new_uetr()
    first = transfer("bank-e", "bank-e", "bank-f", 100, uetr=uetr)
    for txs in ([first, first], [first, transfer("bank-e", "bank-e", "bank-f", 1, uetr=uetr)]):
        with pytest.raises(BlockError, match="share a"):
            chain.ledger.validate_block(chain.next_block(txs))


def test_a_uetr_stays_consumed_after_its_expiry(chain: Chain) -> None:
    """Finding 1 of issue 7: the ledger forgot (signer, UETR) after the expiry height,
    and a new transfer with the same UETR settled again (both debited)."""
    uetr = new_uetr()
    chain.settle([transfer("bank-e", "bank-e", "bank-f", 100, uetr=uetr, expiry_height=2)])
    for _ in range(3):
        chain.settle([])
    again = transfer("bank-e", "bank-e", "bank-f", 100, uetr=uetr, expiry_height=20)
    with pytest.raises(BlockError, match="consumed by tx"):
        chain.ledger.validate_block(chain.next_block([again]))
    assert chain.ledger.balances["bank-e"] == 9_900


def test_a_final_transaction_is_never_carried_again(chain: Chain) -> None:
    """Finding 2 of issue 7: once expired, a final transaction could be carried by a
    later block and its stored result rewritten to EXPIRED."""
    first = transfer("bank-e", "bank-e", "bank-f", 100, expiry_height=2)
    chain.settle([first])
    chain.settle([])
    chain.settle([])  # height 3: past its expiry
    with pytest.raises(BlockError):
        chain.ledger.validate_block(chain.next_block([first]))


def test_dedup_ignores_the_signature_bytes(chain: Chain) -> None:
    tx = transfer("bank-e", "bank-e", "bank-f", 100)
    forged = bytes(64) + tx[64:]  # same signed content, other signature
    assert decode_tx(forged, CHAIN_ID).tx_hash == decode_tx(tx, CHAIN_ID).tx_hash
    with pytest.raises(TxRefused) as info:
        chain.ledger.check_tx(forged)
    assert info.value.code is RefusalCode.BAD_SIGNATURE


def test_only_the_issuer_issues_and_redeems(chain: Chain) -> None:
    effects = chain.settle(
        [
            issue("bank-e", "bank-e", 5),
            redeem("bank-e", "bank-e", 5),
            issue("nbkr", "bank-f", 5),
            redeem("nbkr", "bank-e", 3),
        ]
    )
    assert codes_of(effects) == [RefusalCode.NOT_AUTHORIZED] * 2 + [None, None]
    assert chain.ledger.issued_total == 11_005
    assert chain.ledger.redeemed_total == 3


def test_transfer_needs_the_owner_signature(chain: Chain) -> None:
    effects = chain.settle([transfer("bank-f", "bank-e", "bank-f", 1)])
    assert codes_of(effects) == [RefusalCode.NOT_AUTHORIZED]


def test_unknown_accounts_are_refused(chain: Chain) -> None:
    effects = chain.settle(
        [
            transfer("bank-e", "bank-e", "nobody", 1),
            payout("bank-e", "bank-e", [("bank-f", 1), ("nobody", 1)]),
            issue("nbkr", "nobody", 1),
            redeem("nbkr", "nobody", 1),
        ]
    )
    assert codes_of(effects) == [RefusalCode.UNKNOWN_ACCOUNT] * 4
    assert effects.balances == ()


def test_payout_is_all_or_nothing(chain: Chain) -> None:
    legs = [("bank-f", 4_000), ("bank-e.payroll", 4_000), ("val-b", 3_000)]
    effects = chain.settle([payout("bank-e", "bank-e", legs)])
    assert codes_of(effects) == [RefusalCode.INSUFFICIENT_FUNDS]
    assert effects.balances == ()
    effects = chain.settle([payout("bank-e", "bank-e", [*legs[:2], ("bank-f", 2_000)])])
    assert codes_of(effects) == [None]
    assert dict(effects.balances) == {"bank-e": 0, "bank-f": 6_000, "bank-e.payroll": 4_000}


def test_supply_limit(chain: Chain) -> None:
    effects = chain.settle([issue("nbkr", "bank-f", AMOUNT_MAX - 11_000 + 1)])
    assert codes_of(effects) == [RefusalCode.SUPPLY_LIMIT]
    effects = chain.settle([issue("nbkr", "bank-f", AMOUNT_MAX - 11_000)])
    assert codes_of(effects) == [None]
    assert chain.ledger.balances["bank-f"] == AMOUNT_MAX - 11_000


def test_expired_and_too_far_transactions_make_a_block_invalid(chain: Chain) -> None:
    """Finding 3 of issue 7: EXPIRY_TOO_FAR was a recorded refusal that consumed nothing,
    so the same bytes replayed later became final."""
    chain.settle([])
    expired = transfer("bank-e", "bank-e", "bank-f", 1, expiry_height=1)
    too_far = transfer("bank-e", "bank-e", "bank-f", 1, expiry_height=2 + EXPIRY_HEIGHTS_MAX + 1)
    for tx, reason in ((expired, "expired"), (too_far, "expiry more than")):
        with pytest.raises(BlockError, match=reason):
            chain.ledger.validate_block(chain.next_block([tx]))
    edge = [
        transfer("bank-e", "bank-e", "bank-f", 1, expiry_height=2),
        transfer("bank-e", "bank-e", "bank-f", 1, expiry_height=2 + EXPIRY_HEIGHTS_MAX),
    ]
    assert codes_of(chain.settle(edge)) == [None, None]


def test_admission_applies_every_rule_that_no_other_transaction_changes(chain: Chain) -> None:
    ledger = chain.ledger
    chain.settle([])
    cases = [
        (transfer("bank-e", "bank-e", "bank-f", 1, expiry_height=1), RefusalCode.EXPIRED),
        (
            transfer("bank-e", "bank-e", "bank-f", 1, expiry_height=3 + EXPIRY_HEIGHTS_MAX),
            RefusalCode.EXPIRY_TOO_FAR,
        ),
        (transfer("bank-e", "bank-e", "nobody", 1), RefusalCode.UNKNOWN_ACCOUNT),
        (transfer("bank-f", "bank-e", "bank-f", 1), RefusalCode.NOT_AUTHORIZED),
        (payout("bank-e", "bank-e", [("nobody", 1)]), RefusalCode.UNKNOWN_ACCOUNT),
        (payout("bank-f", "bank-e", [("bank-f", 1)]), RefusalCode.NOT_AUTHORIZED),
        (issue("bank-e", "bank-e", 1), RefusalCode.NOT_AUTHORIZED),
        (issue("nbkr", "nobody", 1), RefusalCode.UNKNOWN_ACCOUNT),
        (redeem("bank-e", "bank-e", 1), RefusalCode.NOT_AUTHORIZED),
        (redeem("nbkr", "nobody", 1), RefusalCode.UNKNOWN_ACCOUNT),
    ]
    for tx, code in cases:
        with pytest.raises(TxRefused) as info:
            ledger.check_admission(decode_tx(tx, CHAIN_ID))
        assert info.value.code is code
    # Balance-dependent rules are the block's: admitted here, refused in the block.
    poor = decode_tx(transfer("bank-f", "bank-f", "bank-e", 1), CHAIN_ID)
    ledger.check_admission(poor)
    assert codes_of(chain.settle([poor.raw])) == [RefusalCode.INSUFFICIENT_FUNDS]


def test_app_hash_depends_on_every_balance() -> None:
    a = Chain(Ledger(make_genesis([("bank-e", 100)])))
    b = Chain(Ledger(make_genesis([("bank-e", 100)])))
    a.settle([transfer("bank-e", "bank-e", "bank-f", 1)])
    b.settle([transfer("bank-e", "bank-e", "bank-f", 2)])
    assert a.ledger.app_hash != b.ledger.app_hash
    c = Chain(Ledger(make_genesis([("bank-e", 100)])))
    d = Chain(Ledger(make_genesis([("bank-e", 100)])))
    c.settle([])
    d.settle([])
    assert c.ledger.app_hash == d.ledger.app_hash


def restore_from(ledger: Ledger, all_effects: list[BlockEffects]) -> Ledger:
    """Restore from what a store would hold after writing these effects."""
    balances: dict[str, int] = {}
    references = MemoryReferences()
    for effects in all_effects:
        balances.update(effects.balances)
        references.record(effects.references_added)
    last = all_effects[-1]
    return Ledger.restore(
        ledger.genesis,
        last_block_bytes=last.block_bytes,
        app_hash=last.app_hash,
        changes_hash=last.changes_hash,
        balances=balances,
        references=references,
        reference_count=len(references.consumed),
        issued_total=last.issued_total,
        redeemed_total=last.redeemed_total,
    )


def test_restore_continues_exactly(chain: Chain) -> None:
    uetr = new_uetr()
    history = [
        chain.settle([transfer("bank-e", "bank-e", "bank-f", 10, uetr=uetr, expiry_height=3)]),
        chain.settle([issue("nbkr", "val-b", 7), redeem("nbkr", "nbkr", 5)]),
        chain.settle([transfer("bank-e", "bank-e", "val-c", 1, expiry_height=50)]),
    ]
    restored = restore_from(chain.ledger, history)
    assert restored.balances == chain.ledger.balances
    assert isinstance(restored.references, MemoryReferences)
    assert isinstance(chain.ledger.references, MemoryReferences)
    assert restored.references.consumed == chain.ledger.references.consumed
    assert (restored.height, restored.block_hash, restored.app_hash) == (
        chain.ledger.height,
        chain.ledger.block_hash,
        chain.ledger.app_hash,
    )
    twin = Chain(restored)
    twin.certificate = chain.certificate
    txs = [transfer("bank-f", "bank-f", "bank-e", 3)]
    assert twin.settle(txs) == chain.settle(txs)
    assert restored.references.consumed == chain.ledger.references.consumed


def test_validate_block_rejects_each_wrong_header_field(chain: Chain) -> None:
    chain.settle([])
    good = chain.next_block([transfer("bank-e", "bank-e", "bank-f", 1)])
    chain.ledger.validate_block(good)
    bad_fields: dict[str, Any] = {
        "chain_id": "other",
        "height": 3,
        "prev_block_hash": bytes(32),
        "app_hash": bytes(32),
        "validator_set_hash": bytes(32),
        "next_validator_set_hash": bytes(32),
        "proposer": "bank-e",
        "time_ms": 0,
        "tx_root": bytes(32),
        "prev_certificate_hash": bytes(32),
    }
    for field, value in bad_fields.items():
        header = dataclasses.replace(good.header, **{field: value})
        with pytest.raises(BlockError, match=field):
            chain.ledger.validate_block(dataclasses.replace(good, header=header))
    with pytest.raises(BlockError, match="too far ahead"):
        chain.ledger.validate_block(good, now_ms=good.header.time_ms - 60_000)


def test_validate_block_checks_the_previous_certificate(chain: Chain) -> None:
    chain.settle([])
    weak = certify(chain.blocks[0][0], voters=VALIDATORS[:2])  # 2 of 4: no quorum
    block = chain.ledger.make_block([], time_ms=1_000, proposer="nbkr", prev_certificate=weak)
    with pytest.raises(BlockError, match="voting power"):
        chain.ledger.validate_block(block)


def test_block_with_a_bad_signature_is_invalid(chain: Chain) -> None:
    tx = transfer("bank-e", "bank-e", "bank-f", 1)
    forged = tx[:10] + bytes([tx[10] ^ 1]) + tx[11:]
    block = chain.next_block([forged])
    with pytest.raises(BlockError, match="BAD_SIGNATURE"):
        chain.ledger.validate_block(block)
    with pytest.raises(BlockError, match="BAD_SIGNATURE"):
        chain.ledger.apply_block(block, encode_certificate(certify(block)), verified=False)
    assert chain.ledger.height == 0


def test_validate_block_skips_signatures_this_node_already_checked(chain: Chain) -> None:
    good = transfer("bank-e", "bank-e", "bank-f", 1)
    other = transfer("bank-e", "bank-e", "bank-f", 2)
    bad = other[:10] + bytes([other[10] ^ 1]) + other[11:]  # content intact, signature not
    pooled = {tx.tx_hash: tx for tx in (decode_tx(good, CHAIN_ID), decode_tx(bad, CHAIN_ID))}
    block = chain.next_block([good, bad])
    with pytest.raises(BlockError, match="transaction 1: BAD_SIGNATURE"):
        chain.ledger.validate_block(block)
    # The bad signature is never looked at again once its exact bytes are known checked
    # (a real pool only holds good ones: this makes the skip observable).
    chain.ledger.validate_block(block, signatures_checked=pooled)
    # Form, header and signer rules still apply to checked transactions.
    wrong_root = dataclasses.replace(block.header, tx_root=bytes(32))
    with pytest.raises(BlockError, match="tx_root"):
        chain.ledger.validate_block(
            dataclasses.replace(block, header=wrong_root), signatures_checked=pooled
        )


def test_checked_signature_covers_only_the_exact_wire_bytes(chain: Chain) -> None:
    tx = transfer("bank-e", "bank-e", "bank-f", 1)
    pooled = {decode_tx(tx, CHAIN_ID).tx_hash: decode_tx(tx, CHAIN_ID)}
    forged = bytes(64) + tx[64:]  # same content and tx hash, another signature
    block = chain.next_block([forged])
    with pytest.raises(BlockError, match="transaction 0: BAD_SIGNATURE"):
        chain.ledger.validate_block(block, signatures_checked=pooled)
    chain.ledger.validate_block(chain.next_block([tx]), signatures_checked=pooled)


def test_apply_block_checks_the_certificate(chain: Chain) -> None:
    block = chain.next_block([])
    other = chain.ledger.make_block([], time_ms=5, proposer="nbkr", prev_certificate=None)
    with pytest.raises(BlockError, match="does not commit"):
        chain.ledger.apply_block(block, encode_certificate(certify(other)))
    with pytest.raises(BlockError, match="certificate"):
        chain.ledger.apply_block(block, b"\xc1")
    weak = encode_certificate(certify(block, voters=VALIDATORS[:2]))
    with pytest.raises(BlockError, match="voting power"):
        chain.ledger.apply_block(block, weak, verified=False)
    effects = chain.ledger.apply_block(block, encode_certificate(certify(block)), verified=False)
    assert effects.height == 1


def test_apply_refuses_a_block_that_does_not_follow(chain: Chain) -> None:
    block = chain.next_block([])
    chain.settle([])
    with pytest.raises(BlockError, match="height"):
        chain.ledger.apply_block(block, encode_certificate(certify(block)))


def test_unknown_signer_is_not_authorized(chain: Chain) -> None:
    tx = decode_tx(transfer("bank-e", "bank-e", "bank-f", 1), CHAIN_ID)
    stranger = tx._replace(signer="stranger")
    with pytest.raises(TxRefused) as info:
        chain.ledger.check_signature(stranger)
    assert info.value.code is RefusalCode.NOT_AUTHORIZED


def test_funds_boundaries_are_exact(chain: Chain) -> None:
    effects = chain.settle(
        [
            payout("bank-e", "bank-e", [("bank-f", 5_000), ("val-b", 5_001)]),
            transfer("bank-e", "bank-e", "bank-f", 10_001),
            redeem("nbkr", "bank-e", 10_001),
            payout("bank-e", "bank-e", [("bank-f", 5_000), ("val-b", 4_999)]),
            transfer("bank-e", "bank-e", "bank-f", 2),
            transfer("bank-e", "bank-e", "bank-f", 1),
        ]
    )
    insufficient = RefusalCode.INSUFFICIENT_FUNDS
    assert codes_of(effects) == [insufficient] * 3 + [None, insufficient, None]
    assert chain.ledger.balances["bank-e"] == 0


def test_tx_result_encoding_round_trips_and_matches_the_ledger(chain: Chain) -> None:
    effects = chain.settle(
        [
            transfer("bank-e", "bank-e", "bank-f", 1),
            transfer("bank-f", "bank-f", "bank-e", 2),
        ]
    )
    for _, encoded in effects.tx_results:
        assert decode_tx_result(encoded).encode() == encoded
    refused = decode_tx_result(effects.tx_results[1][1])
    assert refused == TxResult(code=RefusalCode.INSUFFICIENT_FUNDS, height=1, index=1)
    for corrupt in (b"", b"\x00" * 12, b"\x63" + bytes(12), bytes(14)):
        with pytest.raises(NodeError, match="corrupt tx result"):
            decode_tx_result(corrupt)


def test_each_block_checks_that_its_balance_changes_sum_to_net_issuance(
    chain: Chain,
) -> None:
    ledger = chain.ledger
    supply = ledger.issued_total - ledger.redeemed_total
    ledger._check_block_conservation({}, {}, supply)  # no change, no issuance: holds
    balance = ledger.balances["bank-e"]
    ledger._check_block_conservation({"bank-e": balance}, {"bank-e": balance}, supply)
    # A balance that moved by 1 in a block that issued nothing breaks conservation.
    with pytest.raises(AssertionError):
        ledger._check_block_conservation({"bank-e": balance}, {"bank-e": balance + 1}, supply)
    with pytest.raises(AssertionError):  # and so does a negative balance
        ledger._check_block_conservation(
            {"bank-e": 0, "bank-f": 0}, {"bank-e": -1, "bank-f": 1}, supply
        )


def test_an_unrecorded_balance_change_is_caught_by_the_periodic_full_sum(
    chain: Chain,
) -> None:
    ledger = chain.ledger
    ledger.balances["bank-f.savings"] += 1  # a bug that bypasses the block's records
    with pytest.raises(AssertionError):
        for _ in range(len(ledger.balances)):  # each block changes at least one account
            chain.ledger.apply_block(*certified(chain, [transfer("bank-e", "bank-e", "bank-f", 1)]))


def certified(chain: Chain, txs: list[bytes]) -> tuple[Block, bytes]:
    block = chain.next_block(txs)
    chain.ledger.validate_block(block)
    certificate = certify(block)
    chain.certificate = certificate
    return block, encode_certificate(certificate)


def test_apply_block_reuses_a_pooled_transaction_of_the_very_same_wire_bytes(
    chain: Chain,
) -> None:
    """A proposer settling its own block reuses what its pool decoded (an altered amount
    makes the reuse observable here); other wire bytes with that tx hash are decoded."""
    tx = transfer("bank-e", "bank-e", "bank-f", 1)
    pooled_tx = decode_tx(tx, CHAIN_ID)
    assert isinstance(pooled_tx, Transfer)
    marked = {pooled_tx.tx_hash: pooled_tx._replace(amount=2)}
    block = chain.next_block([tx])
    chain.ledger.apply_block(block, encode_certificate(certify(block)), pooled=marked)
    assert chain.ledger.balances["bank-f"] == 2


def test_apply_block_decodes_other_wire_bytes_than_the_pooled_ones(chain: Chain) -> None:
    tx = transfer("bank-e", "bank-e", "bank-f", 1)
    pooled_tx = decode_tx(tx, CHAIN_ID)
    assert isinstance(pooled_tx, Transfer)
    marked = {pooled_tx.tx_hash: pooled_tx._replace(amount=2)}
    other_signature = bytes(64) + tx[64:]  # same content and tx hash
    block = chain.next_block([other_signature])
    chain.ledger.apply_block(block, encode_certificate(certify(block)), pooled=marked)
    assert chain.ledger.balances["bank-f"] == 1


# -- certified blocks in sync (issue 12) ------------------------------------------------


def forged_transfer(amount: int) -> bytes:
    """A transfer whose content is intact and whose signature is not."""
    tx = transfer("bank-e", "bank-e", "bank-f", amount)
    return tx[:10] + bytes([tx[10] ^ 1]) + tx[11:]


def test_a_certified_block_skips_the_signature_checks_and_nothing_else(chain: Chain) -> None:
    """Only validators that did not check it can certify a block with a bad signature:
    every signer here (all four) stands for a set more than 2/3 faulty. That such a
    block passes shows the signatures are not checked again; an uncertified one (a
    proposal) is still refused."""
    block = chain.next_block([forged_transfer(5)])
    certificate = certify(block, VALIDATORS)
    with pytest.raises(BlockError, match="BAD_SIGNATURE"):
        chain.ledger.validate_block(block)
    chain.ledger.validate_block(block, certificate=certificate)
    effects = chain.ledger.apply_block(block, encode_certificate(certificate))
    assert codes_of(effects) == [None]  # applied
    assert chain.ledger.balances["bank-f"] == 5


def test_only_a_certificate_that_commits_the_block_gives_the_skip(chain: Chain) -> None:
    block = chain.next_block([forged_transfer(5)])
    other = chain.next_block([], time_ms=2_000)
    weak = certify(block, voters=VALIDATORS[:2])  # 2 of 4: no quorum
    for certificate, error in (
        (weak, "voting power"),
        (certify(other), "does not commit"),
        (dataclasses.replace(certify(block), height=2), "does not commit"),
    ):
        with pytest.raises(BlockError, match=error):
            chain.ledger.validate_block(block, certificate=certificate)
    assert chain.ledger.height == 0


def test_a_certified_block_is_checked_for_every_other_rule(chain: Chain) -> None:
    """A certificate vouches for the signatures only: altered transactions, a header that
    does not follow, expired or replayed transactions are refused as without it."""
    tx, other = (transfer("bank-e", "bank-e", "bank-f", amount) for amount in (1, 2))
    chain.settle([tx])
    rules = {
        "tx_root": dataclasses.replace(chain.next_block([forged_transfer(1)]), txs=(other,)),
        "app_hash": dataclasses.replace(
            chain.next_block([]),
            header=dataclasses.replace(chain.next_block([]).header, app_hash=bytes(32)),
        ),
        "expired": chain.next_block([transfer("bank-e", "bank-e", "bank-f", 1, expiry_height=1)]),
        "consumed": chain.next_block([tx]),
    }
    for error, block in rules.items():
        with pytest.raises(BlockError, match=error):
            chain.ledger.validate_block(block, certificate=certify(block, VALIDATORS))
    assert chain.ledger.height == 1
