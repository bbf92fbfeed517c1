"""Anchoring's pure parts: the calldata layout, the record, the status state machine and
the choice of the next height (node/anchor.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from node.anchor import (
    ANCHOR_TAG,
    BACKLOG_DUE_MAX,
    AnchorAttempt,
    AnchorError,
    AnchorPayload,
    AnchorRecord,
    Stage,
    advance,
    api_status,
    decode_calldata,
    decode_record,
    encode_calldata,
    encode_record,
    load_anchor_key,
    next_due_height,
    write_anchor_key,
)
from node.evm_rpc import Receipt

PAYLOAD = AnchorPayload(chain_id="som-devnet", height=40, block_hash=b"\x11" * 32,
                        app_hash=b"\x22" * 32)  # fmt: skip
TX = b"\xaa" * 32
BLOCK = b"\xbb" * 32


def test_calldata_round_trips_and_has_the_documented_layout() -> None:
    data = encode_calldata(PAYLOAD)
    assert data[:16] == ANCHOR_TAG
    assert data[16] == len("som-devnet")
    assert data[17:27] == b"som-devnet"
    assert int.from_bytes(data[27:35], "big") == 40
    assert data[35:67] == PAYLOAD.block_hash
    assert data[67:] == PAYLOAD.app_hash
    assert decode_calldata(data) == PAYLOAD


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"X" + d[1:], "tag"),
        (lambda d: d[:16], "ends after the tag"),
        (lambda d: d[:-1], "does not fit"),
        (lambda d: d + b"\x00", "does not fit"),
        (lambda d: d[:16] + b"\x00" + d[17:], "does not fit"),
        (lambda d: d[:17] + b"\xff" + d[18:], "not ASCII"),
        (lambda d: d[:27] + bytes(8) + d[35:], "height 0"),
    ],
)
def test_calldata_that_is_no_anchor_is_refused(mutate: object, message: str) -> None:
    data = encode_calldata(PAYLOAD)
    with pytest.raises(AnchorError, match=message):
        decode_calldata(mutate(data))  # type: ignore[operator]


def record(stage: Stage = Stage.SENT) -> AnchorRecord:
    attempt = AnchorAttempt(tx_hash=TX, raw_tx=b"\x02raw", max_fee_per_gas=10,
                            max_priority_fee_per_gas=1)  # fmt: skip
    return AnchorRecord(height=40, block_hash=PAYLOAD.block_hash, app_hash=PAYLOAD.app_hash,
                        nonce=3, gas=26_000, attempts=(attempt,), stage=stage)  # fmt: skip


def receipt(status: int = 1, number: int = 7) -> Receipt:
    return Receipt(tx_hash=TX, status=status, block_number=number, block_hash=BLOCK)


def test_record_round_trips() -> None:
    included = advance(record(), receipt=receipt(), canonical_hash=BLOCK, finalized_number=5,
                       settled_height=44)  # fmt: skip
    for r in (record(), included):
        assert decode_record(encode_record(r)) == r


# (stage before, receipt, canonical hash at its block, finalized number) -> stage after
@pytest.mark.parametrize(
    ("before", "seen", "canonical", "finalized", "after"),
    [
        (Stage.SIGNED, None, None, 100, Stage.SIGNED),  # a hash returned proves nothing
        (Stage.SENT, None, None, 100, Stage.SENT),
        (Stage.SENT, receipt(), BLOCK, 6, Stage.INCLUDED),  # in a block above finality
        (Stage.SENT, receipt(), BLOCK, None, Stage.INCLUDED),  # no finalized block yet
        (Stage.SENT, receipt(), BLOCK, 7, Stage.FINALIZED),  # at the finalized block
        (Stage.SIGNED, receipt(), BLOCK, 9, Stage.FINALIZED),  # sent before a crash
        (Stage.SENT, receipt(), b"\xcc" * 32, 9, Stage.SENT),  # its block is not canonical
        (Stage.SENT, receipt(status=0), BLOCK, 9, Stage.FAILED),  # reverted: no anchor
    ],
)
def test_status_state_machine(
    before: Stage, seen: Receipt | None, canonical: bytes | None, finalized: int | None,
    after: Stage,
) -> None:  # fmt: skip
    result = advance(record(before), receipt=seen, canonical_hash=canonical,
                     finalized_number=finalized, settled_height=50)  # fmt: skip
    assert result.stage is after
    assert (result.evm_block_number is not None) == (after in (Stage.INCLUDED, Stage.FINALIZED))
    assert (result.finalized_at_height == 50) == (after is Stage.FINALIZED)


def test_a_reorg_moves_an_included_anchor_back_to_pending() -> None:
    included = advance(record(), receipt=receipt(), canonical_hash=BLOCK, finalized_number=2,
                       settled_height=44)  # fmt: skip
    assert included.stage is Stage.INCLUDED and api_status(included.stage) == "included"
    gone = advance(included, receipt=None, canonical_hash=None, finalized_number=3,
                   settled_height=45)  # fmt: skip
    assert gone.stage is Stage.SENT and api_status(gone.stage) == "pending"
    moved = advance(included, receipt=receipt(), canonical_hash=b"\xdd" * 32,
                    finalized_number=3, settled_height=45)  # fmt: skip
    assert moved.stage is Stage.SENT and moved.evm_block_hash is None


def test_finalized_is_final() -> None:
    final = advance(record(), receipt=receipt(), canonical_hash=BLOCK, finalized_number=7,
                    settled_height=44)  # fmt: skip
    assert advance(final, receipt=None, canonical_hash=None, finalized_number=None,
                   settled_height=60) == final  # fmt: skip


@pytest.mark.parametrize(
    ("last", "settled", "every", "expected"),
    [
        (0, 0, 5, None),
        (0, 4, 5, None),
        (0, 5, 5, (5, None)),
        (5, 9, 5, None),
        (5, 14, 5, (10, None)),  # a small backlog is anchored in order
        (0, 5 * BACKLOG_DUE_MAX, 5, (5, None)),
        (0, 5 * (BACKLOG_DUE_MAX + 1) + 3, 5,
         (5 * (BACKLOG_DUE_MAX + 1), (5, 5 * BACKLOG_DUE_MAX))),
        (7, 8, 1, (8, None)),
    ],
)  # fmt: skip
def test_next_due_height_bounds_the_backlog(
    last: int, settled: int, every: int, expected: tuple[int, tuple[int, int] | None] | None
) -> None:
    assert next_due_height(last, settled, every) == expected


def test_anchor_key_file_is_0600_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "anchor_key.json"
    address = write_anchor_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_anchor_key(path).address == address
    with pytest.raises(AnchorError, match="refusing to overwrite"):
        write_anchor_key(path)
    path.chmod(0o644)
    with pytest.raises(AnchorError, match="too open"):
        load_anchor_key(path)
    assert replace(PAYLOAD, height=1).height == 1
