"""The bank API of a real node process in front of a hostile client (issue 8, findings 9
and 10): idle half-sent requests, a slow-loris, a slow body, and malformed bodies.

The attacker's sockets come from 127.0.0.1 and the honest client from 127.0.0.2: on Linux
all of 127.0.0.0/8 reaches the loopback listener, so one machine plays two client
addresses, and the per-address limit can stop the one without touching the other.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.network import Network, dump_logs


def loopback_aliases() -> bool:
    """Whether this machine routes 127.0.0.2 to loopback (Linux does, macOS does not)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.2", 0))
        except OSError:
            return False
    return True


pytestmark = [
    pytest.mark.network,
    pytest.mark.xdist_group("network"),
    pytest.mark.skipif(not loopback_aliases(), reason="needs 127.0.0.2 on loopback"),
]

ATTACKER = "127.0.0.1"
HONEST = "127.0.0.2"
NODE = "nbkr"  # a 1-validator network: the node makes its own blocks
HALF_SENT = b"GET /v1/status HTTP/1.1\r\nHost: somnet\r\n"  # the blank line never comes
# The node starts with the descriptor limit of the finding (1024) and may raise it to 4096.
NOFILE_AT_START = (1024, 4096)


@contextlib.contextmanager
def descriptors_at_least(count: int) -> Iterator[None]:
    """Let this test process hold `count` sockets (raise its soft limit, restore after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < count:
        pytest.skip(f"needs {count} descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, count), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def network(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Network]:
    env: dict[str, str] = getattr(request, "param", {})
    net = Network.create(tmp_path, validators=1, banks=0, env=env)
    try:
        yield net
    finally:
        codes = net.stop_all()
        assert all(code == 0 for code in codes.values()), (codes, dump_logs(net))
        if codes:  # a node ran: its log holds no traceback
            assert "Traceback" not in net.log(NODE), dump_logs(net)


def start_with_nofile(network: Network, nofile: tuple[int, int]) -> subprocess.Popen[bytes]:
    """Start the node (as Network.start does) with RLIMIT_NOFILE set to `nofile`."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = (nofile[0], nofile[1] if hard == resource.RLIM_INFINITY else min(nofile[1], hard))
    entry = network.entries[NODE]
    with (entry.home / "node.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "run", "--home", str(entry.home)],
            cwd=network.directory,
            env={**os.environ, **network.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limit),
        )
    network.processes[NODE] = process
    network.wait_for(lambda: network.height(NODE) >= 0, 60, "the API answers")
    return process


def api_address(network: Network) -> tuple[str, int]:
    host, _, port = network.api(NODE).removeprefix("http://").rpartition(":")
    return host, int(port)


def honest_request(
    network: Network,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 10,
) -> tuple[int, dict[str, str], Any]:
    """One signed request from the honest address; returns status, headers and the JSON
    body."""
    host, port = api_address(network)
    signed = network.client(NODE).signed_headers(method, path, body or b"")
    headers = {**signed, **(headers or {})}
    connection = http.client.HTTPConnection(
        host, port, timeout=timeout_s, source_address=(HONEST, 0)
    )
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        content_type = response.getheader("Content-Type", "")
        assert content_type.startswith("application/json"), (response.status, data[:300])
        return response.status, dict(response.getheaders()), json.loads(data)
    finally:
        connection.close()


def attacker_socket(network: Network) -> socket.socket:
    sock = socket.socket()
    sock.bind((ATTACKER, 0))
    sock.settimeout(5)
    sock.connect(api_address(network))
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Read what is there without waiting: True once the server closed or reset it."""
    sock.setblocking(False)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def wait_closed(sockets: list[socket.socket], count: int, timeout_s: float) -> set[int]:
    """Wait until `count` of the sockets are closed by the server; returns their indexes."""
    closed: set[int] = set()
    with selectors.DefaultSelector() as selector:
        for index, sock in enumerate(sockets):
            selector.register(sock, selectors.EVENT_READ, index)
        deadline = time.monotonic() + timeout_s
        while len(closed) < count and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                if closed_by_server(sockets[key.data]):
                    closed.add(key.data)
                    selector.unregister(key.fileobj)
    return closed


def read_response(sock: socket.socket, timeout_s: float) -> bytes:
    """Everything the server sends until it closes the connection or the deadline passes."""
    sock.settimeout(timeout_s)
    chunks = []
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(ConnectionResetError, TimeoutError):
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def json_of(response: bytes) -> tuple[int, Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), response[:300]
    return status, json.loads(body)


def nofile_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no Max open files line")


PER_ADDRESS = 100
ATTACK = {
    "SOMNET_API_CONNECTIONS_PER_ADDRESS_MAX": str(PER_ADDRESS),
    "SOMNET_API_HEADER_TIMEOUT_MS": "60000",  # the attack lasts as long as the test needs
}


@pytest.mark.parametrize("network", [ATTACK], indirect=True)
def test_2000_idle_half_sent_requests_do_not_lock_out_an_honest_client(
    network: Network,
) -> None:
    process = start_with_nofile(network, NOFILE_AT_START)
    attackers: list[socket.socket] = []
    with descriptors_at_least(2000 + 256), contextlib.ExitStack() as cleanup:
        failure = None
        for _ in range(2000):
            try:
                sock = attacker_socket(network)
                cleanup.enter_context(sock)
                sock.sendall(HALF_SENT)
            except OSError as exc:  # the node stopped accepting
                failure = f"connection {len(attackers) + 1} of 2000 failed: {exc!r}"
                break
            attackers.append(sock)

        status, _, body = honest_request(network, "GET", "/v1/status", timeout_s=5)
        assert status == 200 and body["node_id"] == NODE
        assert failure is None, failure

        closed = wait_closed(attackers, 2000 - PER_ADDRESS, timeout_s=30)
        assert len(closed) == 2000 - PER_ADDRESS, (len(closed), dump_logs(network))
        still_open = [s for i, s in enumerate(attackers) if i not in closed]
        assert not any(closed_by_server(s) for s in still_open)  # held to the header deadline

        with attacker_socket(network) as extra:  # one more from the attacker's address
            answer, error = json_of(read_response(extra, timeout_s=10))
        assert (answer, error["code"]) == (503, "TOO_MANY_CONNECTIONS"), error

    counters = honest_request(network, "GET", "/v1/status")[2]["api"]
    assert counters["connections_refused"] >= 2000 - PER_ADDRESS + 1, counters
    soft, hard = nofile_limits(process.pid)
    assert soft == hard == min(NOFILE_AT_START[1], resource.getrlimit(resource.RLIMIT_NOFILE)[1])


@pytest.mark.parametrize("network", [{}], indirect=True)
def test_a_node_whose_connections_cannot_fit_its_descriptors_refuses_to_start(
    network: Network,
) -> None:
    """512 API connections (the default) cannot fit a hard limit of 512 descriptors."""
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "run", "--home", str(network.entries[NODE].home)],
        cwd=network.directory,
        env={**os.environ, **network.env},
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512)),
    )
    assert run.returncode == 10, run.stderr  # FatalReason.CONFIG
    assert "api.connections_max 512" in run.stderr and "RLIMIT_NOFILE" in run.stderr


SLOW = {"SOMNET_API_HEADER_TIMEOUT_MS": "2000", "SOMNET_API_BODY_TIMEOUT_MS": "2000"}


def trickle(sock: socket.socket, data: bytes, deadline_s: float) -> tuple[bool, bytes]:
    """Send one byte a second until the server closes the connection or the deadline.

    Returns whether the server closed it, and what it answered before closing."""
    received = b""
    end = time.monotonic() + deadline_s
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        for byte in data:
            if time.monotonic() > end:
                return False, received
            if selector.select(timeout=1.0):  # the server spoke, or closed: read it
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    return True, received
                if not chunk:
                    return True, received
                received += chunk
                continue
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                return True, received
    return False, received


@pytest.mark.parametrize("network", [SLOW], indirect=True)
def test_a_slow_loris_is_disconnected_after_the_header_deadline(network: Network) -> None:
    start_with_nofile(network, NOFILE_AT_START)
    head = b"GET /v1/status HTTP/1.1\r\nHost: somnet\r\n" + b"X-Slow: " + b"a" * 120
    with attacker_socket(network) as loris:
        loris.setblocking(True)
        started = time.monotonic()
        closed, received = trickle(loris, head, deadline_s=15)
        elapsed = time.monotonic() - started
    assert closed, f"still connected after {elapsed:.1f}s, sending a header byte a second"
    assert 1.5 <= elapsed <= 10, elapsed  # the 2 s header deadline, not anything else
    assert received == b""  # nothing to answer: no request ever arrived
    assert honest_request(network, "GET", "/v1/status")[0] == 200


@pytest.mark.parametrize("network", [SLOW], indirect=True)
def test_a_slow_body_gets_a_json_408_and_is_disconnected(network: Network) -> None:
    start_with_nofile(network, NOFILE_AT_START)
    head = (
        b"POST /v1/transactions HTTP/1.1\r\nHost: somnet\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: 200\r\n\r\n"
    )
    with attacker_socket(network) as slow:
        slow.sendall(head)
        started = time.monotonic()
        closed, received = trickle(slow, b"x" * 200, deadline_s=15)
        if not closed:
            received += read_response(slow, timeout_s=1)
        elapsed = time.monotonic() - started
    assert closed, f"still connected after {elapsed:.1f}s, sending a body byte a second"
    assert 1.5 <= elapsed <= 10, elapsed
    status, error = json_of(received)
    assert (status, error["code"]) == (408, "REQUEST_TIMEOUT"), error
    assert honest_request(network, "GET", "/v1/status")[0] == 200


NESTED = b"[" * 100_000 + b"]" * 100_000
JSON = {"Content-Type": "application/json"}
BAD_BODIES = [
    (NESTED, JSON, 400, "MALFORMED"),
    (b'{"tx": ' + NESTED + b"}", JSON, 400, "MALFORMED"),
    (b'{"tx": "00', JSON, 400, "MALFORMED"),
    (b'{"tx": 5}', JSON, 400, "MALFORMED"),
    (b'["tx"]', JSON, 400, "MALFORMED"),
    (b'{"tx": "zz"}', JSON, 400, "MALFORMED"),
    (b'{"tx": "' + b"1" * 5000 + b'"}', JSON, 400, "MALFORMED"),
    (b"\xff\xfe{}", JSON, 400, "MALFORMED"),
    (b'{"tx": "00"}', {"Content-Type": "text/plain"}, 415, "UNSUPPORTED_MEDIA_TYPE"),
    (b"\x00" * 10, {"Content-Type": "application/octet-stream"}, 400, "MALFORMED"),
]


@pytest.mark.parametrize("network", [{}], indirect=True)
def test_malformed_bodies_and_requests_get_json_errors_and_the_node_runs_on(
    network: Network,
) -> None:
    start_with_nofile(network, NOFILE_AT_START)
    for body, headers, status, code in BAD_BODIES:
        answer = honest_request(network, "POST", "/v1/transactions", body, headers)
        assert (answer[0], answer[2]["code"]) == (status, code), (body[:40], answer)
        assert answer[2]["message"], answer

    too_large = b"\x00" * (4 * 1024 * 1024 + 1)  # api.body_bytes_max + 1
    answer = honest_request(network, "POST", "/v1/transactions", too_large)
    assert (answer[0], answer[2]["code"]) == (413, "TOO_LARGE"), answer
    answer = honest_request(network, "GET", "/v1/nothing-here")
    assert (answer[0], answer[2]["code"]) == (404, "NOT_FOUND"), answer
    answer = honest_request(network, "DELETE", "/v1/status")
    assert (answer[0], answer[2]["code"]) == (405, "METHOD_NOT_ALLOWED"), answer
    assert "GET" in answer[1].get("Allow", "").split(","), answer

    for raw in (
        b"GET /v1/status HTTP/1.1\r\nHost: somnet\r\nno colon here\r\n\r\n",
        b"GET /v1/status HTTP/1.1\r\nHost: somnet\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n",
        b"POST /v1/transactions HTTP/1.1\r\nHost: somnet\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/octet-stream\r\n\r\nzz\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # TLS to a plain port
    ):
        with attacker_socket(network) as sock:
            sock.sendall(raw)
            status, error = json_of(read_response(sock, timeout_s=10))
        assert (status, error["code"]) == (400, "BAD_REQUEST"), (raw[:40], error)

    assert network.alive(NODE)
    assert honest_request(network, "GET", "/v1/status")[0] == 200
