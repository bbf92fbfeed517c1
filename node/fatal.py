"""Stopping the process for faults of the environment or the operator (STYLE §5).

Each reason has its own exit status, so a supervisor or an operator can tell a bad
config from a corrupted store without reading logs.
"""

from __future__ import annotations

import enum
import logging
import sys
from typing import NoReturn

__all__ = ["FatalReason", "fatal"]

log = logging.getLogger(__name__)


class FatalReason(enum.IntEnum):
    """Exit statuses; stable, documented in deploy/README.md."""

    CONFIG = 10  # node.toml, genesis or key file refused
    STORE_CORRUPTED = 11  # a checksum, the hash chain or the file size is wrong
    STORE_FULL = 12  # the LMDB map is full: raise [store] map_size_bytes
    ADDRESS_IN_USE = 13  # a listen port is taken
    ASSERTIONS_DISABLED = 14  # python -O strips the assertions that guard money
    STORE_ERROR = 15  # any other storage failure (disk, permissions)


def fatal(reason: FatalReason, message: str) -> NoReturn:
    log.error("fatal reason=%s: %s", reason.name, message)
    print(f"somnet: fatal {reason.name}: {message}", file=sys.stderr, flush=True)
    # os._exit would skip flushing logs; SystemExit is enough because fatal is only
    # called from the main task before or after the event loop runs its work.
    raise SystemExit(int(reason))
