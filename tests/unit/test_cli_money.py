"""The payout file's parser and som formatting: exact tyiyn in, exact text out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli.money import PayoutLeg, parse_payout_csv
from cli.som import format_som, parse_som


def test_a_payout_file_with_a_header_becomes_its_legs_in_order() -> None:
    text = "account,amount_som\r\nbank-1,12.50\n\n bank-2 , 3\nbank-1.payroll,0.01\n"
    assert parse_payout_csv(text) == [
        PayoutLeg(line=2, account="bank-1", amount=1250),
        PayoutLeg(line=4, account="bank-2", amount=300),
        PayoutLeg(line=5, account="bank-1.payroll", amount=1),
    ]


def test_a_payout_file_without_a_header_starts_at_line_1() -> None:
    assert parse_payout_csv("bank-1,1") == [PayoutLeg(line=1, account="bank-1", amount=100)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bank-1,1\nbank-2,1.234\n", "line 2: amount '1.234'"),
        ("bank-1,1\nbank-2,0\n", "line 2: amount '0': must be positive"),
        ("bank-1,1\nbank-2,-1\n", "line 2: amount '-1'"),
        ("bank-1,1\nbank-2,1e3\n", "line 2: amount '1e3'"),
        ("account,amount\nbank-1,1\nbank/2,1\n", "line 3: account 'bank/2'"),
        ("bank-1,1\nbank-2\n", "line 2: expected account,amount_som; got 1 fields"),
        ("bank-1,1\nbank-2,1,x\n", "line 2: expected account,amount_som; got 3 fields"),
        ("bank-1,1\naccount,amount\n", "line 2: amount 'amount'"),  # a header only first
        (",1\n", "line 1: account ''"),
        ("bank-1,99999999999999999.99\n", "line 1: amount '99999999999999999.99': more than"),
        ("account,amount_som\n\n", "no legs"),
        ("", "no legs"),
    ],
)
def test_a_bad_line_is_named(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_payout_csv(text)
    assert str(info.value).startswith(message), info.value


@pytest.mark.parametrize(
    ("tyiyn", "text"),
    [(1, "0.01"), (10, "0.10"), (100, "1.00"), (1250, "12.50"), (0, "0.00"), (-5, "-0.05"),
     (2**63 - 1, "92233720368547758.07")],
)  # fmt: skip
def test_som_is_printed_with_two_decimals(tyiyn: int, text: str) -> None:
    assert format_som(tyiyn) == text


def test_som_formatting_takes_no_floats() -> None:
    with pytest.raises(AssertionError):
        format_som(12.5)  # type: ignore[arg-type]
    with pytest.raises(AssertionError):
        format_som(True)


@given(st.integers(min_value=1, max_value=10**19 - 1))
def test_printed_som_parses_back_to_the_same_tyiyn(tyiyn: int) -> None:
    assert parse_som(format_som(tyiyn)) == tyiyn
