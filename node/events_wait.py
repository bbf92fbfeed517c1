"""Waiting for an asyncio.Event with a deadline, without asyncio.wait_for.

On Python 3.11, `asyncio.wait_for(event.wait(), timeout)` returns normally instead of
raising CancelledError when its task is cancelled just as the event is set: the
cancellation is lost. A loop around it then outlives the cancel, and whoever awaits the
task at shutdown waits for ever (a node ignored SIGTERM that way). `asyncio.wait` never
swallows the caller's cancellation.
"""

from __future__ import annotations

import asyncio

__all__ = ["wait_event"]


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Whether `event` was set within `timeout_s` seconds; raises CancelledError when
    cancelled, always."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((waiter,), timeout=timeout_s)
    finally:
        waiter.cancel()
    return event.is_set()
