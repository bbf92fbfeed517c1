"""Raw TCP connections that never send a request cannot pile up on the peer port.

The handshake's own bounds (test_peer_security.py) apply once a WebSocket request arrives;
before that, the peer port is guarded like the API (node/api_server.py): connections per
address and in total, and a deadline for the request head. Found while looking for issue
8's classes of weakness beyond its list: 1,000 idle sockets held 1,000 descriptors.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.transport import TransportLimits
from tests.integration.network import Network, dump_logs
from tests.integration.waiting import assert_throughout, wait_for

pytestmark = pytest.mark.network

IDLE_SOCKETS = 300


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = Network.create(tmp_path, validators=4, banks=1)
    try:
        yield net
    finally:
        codes = net.stop_all()
        assert all(code == 0 for code in codes.values()), (codes, dump_logs(net))


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the node closed it (after a 503 answer, or with a reset at the deadline)."""
    try:
        while sock.recv(4096, socket.MSG_DONTWAIT):
            pass  # a 503 answer before the close
        return True  # end of stream
    except BlockingIOError:
        return False  # open, nothing (more) to read
    except OSError:
        return True  # reset


def test_the_guard_never_cuts_a_peer_link_that_is_up(network: Network) -> None:
    """The request-head deadline ends with the upgrade request: a link that is up stays up
    (a first version cut every link when the deadline passed after its upgrade)."""
    network.start()
    target = network.validators[0]
    network.wait_height(list(network.entries), 1)
    others = sorted(n for n in network.entries if n != target)
    network.wait_for(
        lambda: sorted(network.status(target)["peers"]) == others, 30, f"{target} linked to all"
    )
    links_up = network.log(target).count("link up")
    window_s = 3 * TransportLimits().handshake_timeout_ms / 1000

    def no_link_went_down_and_up() -> None:
        assert network.log(target).count("link up") == links_up

    assert_throughout(no_link_went_down_and_up, window_s)


def test_idle_sockets_are_cut_and_the_network_goes_on(network: Network) -> None:
    network.start()
    target = network.validators[0]
    network.wait_height(list(network.entries), 1)
    host, _, port = network.entries[target].peer_url.removeprefix("http://").rpartition(":")
    idle = []
    try:
        for _ in range(IDLE_SOCKETS):
            sock = socket.create_connection((host, int(port)), timeout=5)
            idle.append(sock)
        # Beyond the per-address bound a socket is closed at once; the others when the
        # request-head deadline passes. None stays.
        wait_for(
            lambda: all(closed_by_peer(s) for s in idle),
            30,
            f"{target} to close all {IDLE_SOCKETS} idle sockets",
            seen=lambda: sum(not closed_by_peer(s) for s in idle),
        )
    finally:
        for sock in idle:
            sock.close()
    # The network keeps finalizing transfers, and every genuine peer is linked again (here
    # the flood comes from the peers' own address, 127.0.0.1, so a peer that redialed
    # during it waited for the idle sockets' deadline like everyone on that address).
    bank = network.banks[0]
    network.wait_for(lambda: network.status(bank)["caught_up"], 30, f"{bank} caught up")
    started = time.monotonic()
    tx_hash = network.submit(bank, network.sign_transfer(bank, target, 5))
    assert network.wait_final(bank, tx_hash)["status"] == "final"
    assert time.monotonic() - started < 30
    others = sorted(n for n in network.entries if n != target)
    network.wait_for(
        lambda: sorted(network.status(target)["peers"]) == others,
        30,
        f"{target} linked to every peer again",
        seen=lambda: network.status(target)["peers"],
    )
