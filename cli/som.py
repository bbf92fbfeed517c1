"""Som amounts as people write and read them; the ledger counts integer tyiyn (1 som =
100 tyiyn), and money never passes through a float on its way in or out."""

from __future__ import annotations

import re

__all__ = ["format_som", "parse_som"]

AMOUNT_PATTERN = re.compile(r"(0|[1-9][0-9]{0,16})(\.[0-9]{1,2})?")


def parse_som(text: str) -> int:
    """'12.50' som -> 1250 tyiyn, exactly.

    Raises:
        ValueError: not a positive amount of som with at most two decimals.
    """
    match = AMOUNT_PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(f"amount {text!r}: expected som like 12 or 12.5 or 12.50")
    whole, fraction = match.group(1), (match.group(2) or ".")[1:]
    tyiyn = int(whole) * 100 + int(fraction.ljust(2, "0"))
    if tyiyn < 1:
        raise ValueError(f"amount {text!r}: must be positive")
    return tyiyn


def format_som(tyiyn: int) -> str:
    """1250 tyiyn -> '12.50': always two decimals, by integer arithmetic."""
    # type() rather than isinstance(): a bool is an int subclass and is never money.
    assert type(tyiyn) is int, f"an amount in tyiyn is an int, not {type(tyiyn).__name__}"
    sign = "-" if tyiyn < 0 else ""
    whole, fraction = divmod(abs(tyiyn), 100)
    return f"{sign}{whole}.{fraction:02d}"
