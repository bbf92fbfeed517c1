"""Free loopback ports for a local network: the benchmarks' fresh networks and the tests'.

A port is chosen now and bound later, when a node starts (or restarts). Two processes
(xdist workers, two engineers' test runs, a benchmark beside them) must never choose
overlapping ranges in that gap, so a range is a run of blocks of PORT_BLOCK_SIZE ports,
each reserved with a file lock that every process using this module honours.
"""

from __future__ import annotations

import fcntl
import random
import socket
import tempfile
from pathlib import Path
from typing import IO

__all__ = ["free_port_range"]

PORT_MIN = 20_000
PORT_MAX = 32_000
"""Local networks listen below Linux's ephemeral range (32768-60999): a port there can be
taken by any outbound connection between choosing it and a node (re)starting on it."""
PORT_BLOCK_SIZE = 16
PORT_LOCK_DIR = Path(tempfile.gettempdir()) / "somnet-test-ports"
"""Named for its first users, the tests; kept so that processes of older checkouts on the
same machine still see these reservations and we see theirs."""
_port_locks: list[IO[bytes]] = []
"""Open lock files of the port blocks this process reserved; the kernel drops the locks
when the process exits, so a reservation lasts as long as the process."""


def _reserve_port_block(block: int) -> IO[bytes] | None:
    """An exclusive lock on one block of ports, or None if another process holds it."""
    PORT_LOCK_DIR.mkdir(exist_ok=True)
    lock = (PORT_LOCK_DIR / f"{block * PORT_BLOCK_SIZE}.lock").open("ab")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def _bindable(base: int, count: int) -> bool:
    sockets = []
    try:
        for port in range(base, base + count):
            s = socket.socket()
            sockets.append(s)
            s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for s in sockets:
            s.close()


def free_port_range(count: int) -> int:
    """A base port with `count` consecutive loopback ports, free now and reserved for
    this process until it exits (a restarted node needs its ports again)."""
    blocks = -(-count // PORT_BLOCK_SIZE)
    rng = random.Random()
    for _ in range(200):
        first = rng.randrange(PORT_MIN // PORT_BLOCK_SIZE, PORT_MAX // PORT_BLOCK_SIZE - blocks)
        locks = []
        for block in range(first, first + blocks):
            lock = _reserve_port_block(block)
            if lock is None:
                break
            locks.append(lock)
        base = first * PORT_BLOCK_SIZE
        if len(locks) == blocks and _bindable(base, count):
            _port_locks.extend(locks)
            return base
        for lock in locks:
            lock.close()
    raise RuntimeError("no free port range")
