"""node/events_wait.py: a wait with a deadline that never loses its task's cancellation
(asyncio.wait_for on 3.11 can, and a node then ignored SIGTERM)."""

from __future__ import annotations

import asyncio

import pytest

from node.events_wait import wait_event


async def test_it_says_whether_the_event_was_set_in_time() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_soon(event.set)
    assert await wait_event(event, 5) is True


async def test_a_cancel_as_the_event_is_set_is_never_lost() -> None:
    event = asyncio.Event()
    waiting = asyncio.ensure_future(wait_event(event, 60))
    await asyncio.sleep(0)  # it waits now
    event.set()
    waiting.cancel()  # in the same turn of the loop as the set
    with pytest.raises(asyncio.CancelledError):
        await waiting
