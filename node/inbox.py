"""The driver's inbox: fair between peers, bounded per peer, and never losing our own events.

Theory of operation: the node's own events (timers the replica armed, the one pending
wake-up) wait in their own queue, are never dropped (a lost timeout could stall a round)
and go first. Each peer's payloads wait in that peer's own bounded queue, and peers are
served in turn, one payload each, so a peer that floods only delays itself: its queue
fills and its excess is dropped, while every other peer's next payload is at most one
turn of the ring away.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Generic, TypeVar

__all__ = ["FairInbox"]

T = TypeVar("T")


class FairInbox(Generic[T]):
    """Own events first, then one payload per peer in turn. One consumer."""

    def __init__(self, *, per_peer_max: int) -> None:
        assert per_peer_max >= 1
        self.per_peer_max = per_peer_max
        self._own: collections.deque[T] = collections.deque()
        self._peers: dict[str, collections.deque[T]] = {}
        self._ring: collections.deque[str] = collections.deque()  # peers with payloads
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._own) + sum(len(queue) for queue in self._peers.values())

    def put_own(self, item: T) -> None:
        self._own.append(item)
        self._ready.set()

    def put_from(self, peer_id: str, item: T) -> bool:
        """Queue a peer's payload; False (and nothing queued) if its queue is full."""
        queue = self._peers.setdefault(peer_id, collections.deque())
        if len(queue) >= self.per_peer_max:
            return False
        if not queue:
            self._ring.append(peer_id)
        queue.append(item)
        self._ready.set()
        return True

    def drop_peer(self, peer_id: str) -> int:
        """Forget what a peer has queued (it was disconnected); returns how much."""
        queue = self._peers.pop(peer_id, None)
        if not queue:
            return 0
        self._ring.remove(peer_id)
        return len(queue)

    def get_nowait(self) -> T | None:
        if self._own:
            return self._own.popleft()
        if not self._ring:
            return None
        peer_id = self._ring.popleft()
        queue = self._peers[peer_id]
        item = queue.popleft()
        if queue:
            self._ring.append(peer_id)  # its next payload waits for everyone else's turn
        else:
            del self._peers[peer_id]
        return item

    async def get(self) -> T:
        while True:
            item = self.get_nowait()
            if item is not None:
                return item
            self._ready.clear()
            await self._ready.wait()
