"""The driver's inbox: own events first and never dropped; peers served in turn."""

from __future__ import annotations

from node.inbox import FairInbox


def drain(inbox: FairInbox[str]) -> list[str]:
    return list(iter(inbox.get_nowait, None))


async def test_own_events_first_then_one_payload_per_peer_in_turn() -> None:
    inbox: FairInbox[str] = FairInbox(per_peer_max=10)
    for i in range(3):
        inbox.put_from("flooder", f"f{i}")
    inbox.put_from("quiet", "q0")
    inbox.put_own("timer")
    inbox.put_from("quiet", "q1")
    assert drain(inbox) == ["timer", "f0", "q0", "f1", "q1", "f2"]


async def test_a_full_peer_queue_refuses_only_that_peer() -> None:
    inbox: FairInbox[str] = FairInbox(per_peer_max=2)
    assert inbox.put_from("flooder", "a")
    assert inbox.put_from("flooder", "b")
    assert not inbox.put_from("flooder", "c")
    assert inbox.put_from("other", "x")
    for i in range(100):
        inbox.put_own(f"t{i}")  # own events are never refused
    assert len(inbox) == 103
    assert inbox.drop_peer("flooder") == 2
    assert drain(inbox)[-1] == "x"


async def test_get_waits_for_an_item() -> None:
    inbox: FairInbox[str] = FairInbox(per_peer_max=1)
    inbox.put_from("p", "v")
    assert await inbox.get() == "v"
