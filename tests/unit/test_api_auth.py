"""The request signatures of the bank API (node/api_auth.py), on a real socket.

An application of one echo route behind the Authenticator's middleware is served by
aiohttp's test server; requests are signed by the project's ApiClient, by a tiny
independent signer below (what a bank writes in its own language), or sent as raw bytes
where a hostile client would send what no HTTP library does. The clock is injected, so
ages, replays and the rate are judged at exact times.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from nacl.signing import SigningKey
from yarl import URL

from cli.api_client import ApiClient, ApiError, Credentials
from node.api_auth import CLOCK_SKEW_S, Authenticator, AuthLimits, caller_of
from tests.unit.ledger_support import key_of

PARTICIPANTS = ("nbkr", "bank-a", "bank-b")
SUPERVISOR = "sup-1"
AGE_S_MAX = 60


class Clock:
    """Starts at the system's time, as ApiClient.call signs with the system clock."""

    def __init__(self) -> None:
        self.start_s = int(time.time())
        self.now_s = float(self.start_s)

    def __call__(self) -> float:
        return self.now_s


@dataclass
class Served:
    server: TestServer
    clock: Clock
    authenticator: Authenticator
    waiting: asyncio.Event
    release: asyncio.Event

    def client(self, participant_id: str, key: SigningKey | None = None) -> ApiClient:
        credentials = Credentials(participant_id, key or key_of(participant_id))
        return ApiClient(str(self.server.make_url("")), credentials)

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port


async def echo(request: web.Request) -> web.Response:
    caller = caller_of(request)
    body = await request.read()
    return web.json_response(
        {
            "caller": caller.participant_id,
            "reads_all": caller.reads_all,
            "path": request.path,
            "query": request.query_string,
            "body": body.decode(errors="replace"),
        }
    )


async def serve(limits: AuthLimits) -> Served:
    clock = Clock()
    keys = {pid: bytes(key_of(pid).verify_key) for pid in (*PARTICIPANTS, SUPERVISOR)}
    authenticator = Authenticator(keys, ["nbkr", SUPERVISOR], limits, now_s=clock)
    waiting, release = asyncio.Event(), asyncio.Event()

    async def wait(request: web.Request) -> web.Response:
        async with authenticator.wait_slot(caller_of(request)):
            waiting.set()
            await release.wait()
        return web.json_response({"waited": True})

    app = web.Application(middlewares=[authenticator.middleware()])
    app.router.add_get("/v1/wait", wait)
    app.router.add_route("*", "/v1/{tail:.*}", echo)
    server = TestServer(app)
    await server.start_server()
    return Served(server, clock, authenticator, waiting, release)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    served = await serve(AuthLimits(signature_age_s_max=AGE_S_MAX))
    yield served
    await served.server.close()


async def send(
    served: Served,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One request through aiohttp's client, the target sent exactly as given."""
    url = URL(f"http://127.0.0.1:{served.port}{target}", encoded=True)
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers or {}, data=body) as response,
    ):
        document = await response.json(content_type=None)
        return response.status, document, dict(response.headers)


async def send_raw(served: Served, head: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """A request written byte for byte on a fresh connection, as no HTTP library would."""
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        writer.write(head.encode("latin-1") + body)
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    _, _, document = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(document)


def signed(
    served: Served,
    participant_id: str,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    key: SigningKey | None = None,
    created: int | None = None,
) -> dict[str, str]:
    """The project client's signature headers for one request."""
    client = served.client(participant_id, key)
    return client.signed_headers(method, target, body, created=created or int(served.clock()))


COMPONENTS = ("@method", "@path", "@query", "content-digest")


def hand_signed(
    key: SigningKey,
    keyid: str,
    method: str,
    path: str,
    query: str,
    body: bytes,
    *,
    created: int,
    components: tuple[str, ...] = COMPONENTS,
    digest: str | None = None,
    label: str = "somnet",
) -> dict[str, str]:
    """RFC 9421 by hand: SHA-256 Content-Digest (RFC 9530), the signature base as text,
    Ed25519 from PyNaCl; no HTTP signature library. A bank can do this in any language."""
    if digest is None:
        digest = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    values = {"@method": method, "@path": path, "@query": "?" + query, "content-digest": digest}
    nonce = secrets.token_urlsafe(24)
    inner = "(" + " ".join(f'"{c}"' for c in components) + ")"
    params = f'{inner};created={created};keyid="{keyid}";nonce="{nonce}";alg="ed25519"'
    base = "".join(f'"{c}": {values[c]}\n' for c in components) + f'"@signature-params": {params}'
    signature = base64.b64encode(key.sign(base.encode("ascii")).signature).decode()
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{label}={params}",
        "Signature": f"{label}=:{signature}:",
    }


# -- accepted ----------------------------------------------------------------------------


async def test_a_request_signed_by_the_project_client_is_accepted_as_its_signer(
    served: Served,
) -> None:
    async with served.client("bank-a") as api:
        answer = await api.call("POST", "/v1/echo", query={"limit": 5}, body=b"hello")
    assert answer == {
        "caller": "bank-a",
        "reads_all": False,
        "path": "/v1/echo",
        "query": "limit=5",
        "body": "hello",
    }


async def test_the_central_bank_and_a_supervisor_read_everything(served: Served) -> None:
    for participant_id, reads_all in [("nbkr", True), (SUPERVISOR, True), ("bank-b", False)]:
        async with served.client(participant_id) as api:
            answer = await api.call("GET", "/v1/echo")
        assert (answer["caller"], answer["reads_all"]) == (participant_id, reads_all)


async def test_a_request_signed_by_hand_without_a_signature_library_is_accepted(
    served: Served,
) -> None:
    body = b'{"tx": "00"}'
    target_query = "wait_ms=0&x=%2F"
    headers = hand_signed(
        key_of("bank-b"), "bank-b", "POST", "/v1/any/path", target_query, body,
        created=served.clock.start_s,
    )  # fmt: skip
    status, answer, _ = await send(served, "POST", f"/v1/any/path?{target_query}", headers, body)
    assert status == 200, answer
    assert answer["caller"] == "bank-b"
    # And with no query and no body: "@query" is "?" and the digest is of b"".
    headers = hand_signed(
        key_of("bank-b"), "bank-b", "GET", "/v1/x", "", b"", created=served.clock.start_s
    )
    status, answer, _ = await send(served, "GET", "/v1/x", headers)
    assert status == 200, answer


async def test_a_sha512_content_digest_is_checked_like_a_sha256_one(served: Served) -> None:
    body = b"payload"
    good = "sha-512=:" + base64.b64encode(hashlib.sha512(body).digest()).decode() + ":"
    bad = "sha-512=:" + base64.b64encode(hashlib.sha512(b"other").digest()).decode() + ":"
    sha256 = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    key = key_of("bank-a")
    for digest, status in [(good, 200), (bad, 401), (f"{sha256}, {bad}", 401)]:
        headers = hand_signed(
            key, "bank-a", "POST", "/v1/e", "", body, created=served.clock.start_s, digest=digest
        )
        answer_status, answer, _ = await send(served, "POST", "/v1/e", headers, body)
        assert answer_status == status, (digest, answer)
        if status == 401:
            assert answer["code"] == "SIGNATURE_INVALID"


# -- refused: 401 ------------------------------------------------------------------------


async def test_an_unsigned_request_is_401_signature_missing(served: Served) -> None:
    status, answer, _ = await send(served, "GET", "/v1/echo")
    assert (status, answer["code"]) == (401, "SIGNATURE_MISSING")


@pytest.mark.parametrize(
    ("signer", "key_owner", "sent_target", "sent_body"),
    [
        ("bank-a", "bank-b", "/v1/accounts/bank-a?limit=1", b"body"),  # wrong key
        ("ghost", "ghost", "/v1/accounts/bank-a?limit=1", b"body"),  # unknown keyid
        ("bank-a", "bank-a", "/v1/accounts/bank-b?limit=1", b"body"),  # path changed
        ("bank-a", "bank-a", "/v1/accounts/bank-a?limit=1000", b"body"),  # query changed
        ("bank-a", "bank-a", "/v1/accounts/bank-a", b"body"),  # query dropped
        ("bank-a", "bank-a", "/v1/accounts/bank-a?limit=1", b"bodY"),  # body changed
    ],
)
async def test_a_wrong_key_unknown_keyid_or_changed_request_is_401_signature_invalid(
    served: Served, signer: str, key_owner: str, sent_target: str, sent_body: bytes
) -> None:
    headers = signed(
        served, signer, "POST", "/v1/accounts/bank-a?limit=1", b"body", key=key_of(key_owner)
    )
    status, answer, _ = await send(served, "POST", sent_target, headers, sent_body)
    assert (status, answer["code"]) == (401, "SIGNATURE_INVALID"), answer


async def test_a_changed_body_with_its_own_new_digest_is_401(served: Served) -> None:
    headers = signed(served, "bank-a", "POST", "/v1/tx", b"pay 1")
    digest = base64.b64encode(hashlib.sha256(b"pay 1000").digest()).decode()
    headers["Content-Digest"] = f"sha-256=:{digest}:"
    status, answer, _ = await send(served, "POST", "/v1/tx", headers, b"pay 1000")
    assert (status, answer["code"]) == (401, "SIGNATURE_INVALID")


@pytest.mark.parametrize(
    "components",
    [
        ("@method", "@path", "@query"),  # the body is not covered
        ("@method", "@path", "content-digest"),  # the query is not covered
        ("@path", "@query", "content-digest"),  # the method is not covered
    ],
)
async def test_a_signature_not_covering_every_component_is_401(
    served: Served, components: tuple[str, ...]
) -> None:
    headers = hand_signed(
        key_of("bank-a"), "bank-a", "POST", "/v1/e", "a=1", b"x",
        created=served.clock.start_s, components=components,
    )  # fmt: skip
    status, answer, _ = await send(served, "POST", "/v1/e?a=1", headers, b"x")
    assert (status, answer["code"]) == (401, "SIGNATURE_INVALID"), answer


async def test_a_request_with_two_signatures_is_401(served: Served) -> None:
    """Two labels (say, one of a reader of everything): which one counts is ambiguous."""
    mine = hand_signed(
        key_of("bank-a"), "bank-a", "GET", "/v1/e", "", b"", created=served.clock.start_s
    )
    other = hand_signed(
        key_of("nbkr"),
        "nbkr",
        "GET",
        "/v1/e",
        "",
        b"",
        created=served.clock.start_s,
        label="second",
    )
    headers = {
        "Content-Digest": mine["Content-Digest"],
        "Signature-Input": f"{mine['Signature-Input']}, {other['Signature-Input']}",
        "Signature": f"{mine['Signature']}, {other['Signature']}",
    }
    status, answer, _ = await send(served, "GET", "/v1/e", headers)
    assert (status, answer["code"]) == (401, "SIGNATURE_INVALID"), answer


async def test_the_host_header_cannot_move_the_signed_path_onto_another_resource(
    served: Served,
) -> None:
    """Once the URL the library parsed was Host + target, so a `#` in the Host made it
    read a path the signer signed while the router served the target (a fix's test)."""
    headers = signed(served, "nbkr", "GET", "/v1/transactions/ab")
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head = (
        "GET /v1/accounts/bank-b HTTP/1.1\r\nHost: x/v1/transactions/ab#\r\n"
        f"{lines}Connection: close\r\n\r\n"
    )
    status, answer = await send_raw(served, head)
    assert (status, answer["code"]) == (401, "SIGNATURE_INVALID"), answer
    # The same signed request, untouched, is accepted (it was not used up above).
    status, answer, _ = await send(served, "GET", "/v1/transactions/ab", headers)
    assert (status, answer["path"]) == (200, "/v1/transactions/ab")


async def test_an_absolute_form_target_is_401(served: Served) -> None:
    headers = signed(served, "bank-a", "GET", "/v1/e")
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head = f"GET http://127.0.0.1/v1/e HTTP/1.1\r\nHost: x\r\n{lines}Connection: close\r\n\r\n"
    status, answer = await send_raw(served, head)
    assert (status, answer["code"]) == (401, "SIGNATURE_INVALID"), answer


# -- time and replays --------------------------------------------------------------------


async def test_a_signature_older_than_the_window_is_401_signature_stale(served: Served) -> None:
    oldest = signed(served, "bank-a", "GET", "/v1/e", created=served.clock.start_s - AGE_S_MAX)
    status, _, _ = await send(served, "GET", "/v1/e", oldest)
    assert status == 200
    stale = signed(served, "bank-a", "GET", "/v1/e", created=served.clock.start_s - AGE_S_MAX - 1)
    status, answer, _ = await send(served, "GET", "/v1/e", stale)
    assert (status, answer["code"]) == (401, "SIGNATURE_STALE")


async def test_a_signature_from_the_future_is_401_so_no_nonce_outlives_the_window(
    served: Served,
) -> None:
    """`created` far ahead would keep a signed request usable (and its nonce held) for
    long; beyond the skew it is refused, by the node's clock, not the system's."""
    ahead = signed(
        served, "bank-a", "GET", "/v1/e", created=served.clock.start_s + CLOCK_SKEW_S + 1
    )
    status, answer, _ = await send(served, "GET", "/v1/e", ahead)
    assert (status, answer["code"]) == (401, "SIGNATURE_INVALID")
    edge = signed(served, "bank-a", "GET", "/v1/e", created=served.clock.start_s + CLOCK_SKEW_S)
    assert (await send(served, "GET", "/v1/e", edge))[0] == 200
    # Still remembered at its last acceptable second, so never usable twice.
    served.clock.now_s = served.clock.start_s + CLOCK_SKEW_S + AGE_S_MAX
    status, answer, _ = await send(served, "GET", "/v1/e", edge)
    assert (status, answer["code"]) == (401, "SIGNATURE_REPLAYED")


async def test_the_same_signed_request_twice_is_401_signature_replayed(served: Served) -> None:
    headers = signed(served, "bank-a", "POST", "/v1/tx", b"pay")
    assert (await send(served, "POST", "/v1/tx", headers, b"pay"))[0] == 200
    status, answer, _ = await send(served, "POST", "/v1/tx", headers, b"pay")
    assert (status, answer["code"]) == (401, "SIGNATURE_REPLAYED")


async def test_nonces_are_forgotten_once_their_signature_is_stale_anyway(served: Served) -> None:
    first = signed(served, "bank-a", "GET", "/v1/e")
    assert (await send(served, "GET", "/v1/e", first))[0] == 200
    assert served.authenticator.nonce_count("bank-a") == 1
    served.clock.now_s = served.clock.start_s + AGE_S_MAX + CLOCK_SKEW_S + 1
    later = signed(served, "bank-a", "GET", "/v1/e")
    assert (await send(served, "GET", "/v1/e", later))[0] == 200
    assert served.authenticator.nonce_count("bank-a") == 1  # the first one is gone
    status, answer, _ = await send(served, "GET", "/v1/e", first)
    assert (status, answer["code"]) == (401, "SIGNATURE_STALE")  # and stays unusable


# -- limits per participant --------------------------------------------------------------


async def test_over_the_rate_is_429_and_refused_requests_cost_no_rate() -> None:
    served = await serve(AuthLimits(signature_age_s_max=AGE_S_MAX, requests_per_s_max=3))
    try:
        accepted = [signed(served, "bank-a", "GET", f"/v1/e/{i}") for i in range(3)]
        for i, headers in enumerate(accepted):
            assert (await send(served, "GET", f"/v1/e/{i}", headers))[0] == 200
        over = signed(served, "bank-a", "GET", "/v1/e/over")
        status, answer, response_headers = await send(served, "GET", "/v1/e/over", over)
        assert (status, answer["code"]) == (429, "RATE_LIMITED")
        assert response_headers["Retry-After"] == "1"
        # Another participant has its own rate.
        other = signed(served, "bank-b", "GET", "/v1/e")
        assert (await send(served, "GET", "/v1/e", other))[0] == 200
        served.clock.now_s += 0.34  # one token back (a third of a second at 3/s)
        for _ in range(5):  # replays, bad signatures and unsigned requests take none of it
            status, answer, _ = await send(served, "GET", "/v1/e/0", accepted[0])
            assert answer["code"] == "SIGNATURE_REPLAYED"
            forged = signed(served, "bank-a", "GET", "/v1/e", key=key_of("bank-b"))
            assert (await send(served, "GET", "/v1/e", forged))[1]["code"] == "SIGNATURE_INVALID"
            assert (await send(served, "GET", "/v1/e"))[1]["code"] == "SIGNATURE_MISSING"
        # The request refused for its rate was not used up: the same one now passes.
        assert (await send(served, "GET", "/v1/e/over", over))[0] == 200
        again = signed(served, "bank-a", "GET", "/v1/e")
        assert (await send(served, "GET", "/v1/e", again))[1]["code"] == "RATE_LIMITED"
    finally:
        await served.server.close()


async def test_more_waits_than_allowed_are_429_too_many_waits() -> None:
    served = await serve(AuthLimits(signature_age_s_max=AGE_S_MAX, waits_max=1))
    try:
        first = asyncio.create_task(
            send(served, "GET", "/v1/wait", signed(served, "bank-a", "GET", "/v1/wait"))
        )
        async with asyncio.timeout(10):
            await served.waiting.wait()
        status, answer, headers = await send(
            served, "GET", "/v1/wait", signed(served, "bank-a", "GET", "/v1/wait")
        )
        assert (status, answer["code"]) == (429, "TOO_MANY_WAITS")
        assert headers["Retry-After"] == "1"
        # The slots are per participant: bank-b still has its own.
        second = asyncio.create_task(
            send(served, "GET", "/v1/wait", signed(served, "bank-b", "GET", "/v1/wait"))
        )
        served.release.set()
        async with asyncio.timeout(10):
            assert (await first)[0] == 200
            assert (await second)[0] == 200
        # Released: bank-a may wait again.
        status, _, _ = await send(
            served, "GET", "/v1/wait", signed(served, "bank-a", "GET", "/v1/wait")
        )
        assert status == 200
    finally:
        await served.server.close()


async def test_keys_are_looked_up_per_request_so_admissions_and_rotations_apply_at_once() -> None:
    """node/api.py resolves each keyid in the ledger when the request arrives."""
    keys: dict[str, bytes] = {"nbkr": bytes(key_of("nbkr").verify_key)}
    authenticator = Authenticator(keys.get, ["nbkr"], AuthLimits())
    app = web.Application(middlewares=[authenticator.middleware()])
    app.router.add_route("*", "/v1/{tail:.*}", echo)
    server = TestServer(app)
    await server.start_server()
    url = str(server.make_url(""))
    old_key, new_key = key_of("bank-c"), SigningKey.generate()

    async def caller_with(key: SigningKey) -> str:
        async with ApiClient(url, Credentials("bank-c", key)) as api:
            try:
                return str((await api.call("GET", "/v1/echo"))["caller"])
            except ApiError as exc:
                return exc.code

    try:
        assert await caller_with(old_key) == "SIGNATURE_INVALID"  # not admitted yet
        assert authenticator.nonce_count("bank-c") == 0
        keys["bank-c"] = bytes(old_key.verify_key)  # admitted
        assert await caller_with(old_key) == "bank-c"
        keys["bank-c"] = bytes(new_key.verify_key)  # rotated
        assert await caller_with(old_key) == "SIGNATURE_INVALID"
        assert await caller_with(new_key) == "bank-c"
        assert authenticator.nonce_count("bank-c") == 2
    finally:
        await server.close()
