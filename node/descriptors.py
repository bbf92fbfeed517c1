"""The process's file descriptor budget (RLIMIT_NOFILE).

Every socket is a descriptor. Many systems start a process with a soft limit of 1024
while allowing far more (the hard limit), so the node raises its soft limit at start, up
to the hard limit or NOFILE_TARGET, and then checks that what it may open fits: the API's
connections_max, a few per peer, and a base for everything else. A node that cannot fit
stops at start (exit status 10) instead of failing calls once it is busy.
"""

from __future__ import annotations

import logging
import resource

__all__ = ["descriptors_needed", "raise_descriptor_limit"]

log = logging.getLogger(__name__)

# Enough for the largest api.connections_max node.config allows with its peers; no need
# to take a million because the hard limit allows it.
NOFILE_TARGET = 65_536
# Standard streams, the event loop, the store, the log, DNS lookups, and refused API
# connections that are being closed.
DESCRIPTORS_BASE = 128
# A dialled and an accepted link per peer, each with room for a reconnection.
DESCRIPTORS_PER_PEER = 4
UNLIMITED = 2**63 - 1


def descriptors_needed(*, api_connections_max: int, peer_count: int) -> int:
    assert api_connections_max >= 1
    assert peer_count >= 0
    return api_connections_max + DESCRIPTORS_BASE + DESCRIPTORS_PER_PEER * peer_count


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit or NOFILE_TARGET, whichever is
    lower; never lower it. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return UNLIMITED
    target = NOFILE_TARGET if hard == resource.RLIM_INFINITY else min(hard, NOFILE_TARGET)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:  # e.g. macOS caps it below the hard limit
            log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, target, exc)
            return soft
        log.info("descriptor limit raised soft=%d->%d hard=%d", soft, target, hard)
        return target
    return soft
