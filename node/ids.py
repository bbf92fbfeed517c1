"""The one rule for ids: participants, accounts and the chain.

An id is 1..64 characters of A-Z a-z 0-9 - . _ ~ (RFC 3986 "unreserved": the characters
that never need escaping in a URL), starting with a letter or a digit. So an account id
is its own path segment in `GET /v1/accounts/{id}`: a "/" would split it, percent-
encoding would give one account two spellings, and "." or ".." alone would be removed by
path normalisation. The first character also keeps an id from reading as a command-line
option ("-x") or a home directory ("~x"). ASCII only, so 64 characters are 64 bytes.
"""

from __future__ import annotations

import re
from typing import TypeGuard

__all__ = ["ID_CHARS_MAX", "ID_RULE", "is_id"]

ID_CHARS_MAX = 64
ID_RULE = f"1..{ID_CHARS_MAX} characters of A-Z a-z 0-9 - . _ ~, the first a letter or digit"
_ID_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._~-]{{0,{ID_CHARS_MAX - 1}}}")


def is_id(x: object) -> TypeGuard[str]:
    """True if `x` is a str that follows the id rule (ID_RULE)."""
    return type(x) is str and _ID_PATTERN.fullmatch(x) is not None
