"""The API's connection guard in one process, on loopback sockets: the total limit, the
deadline across keep-alive requests, and our own bug answered as a bounded 500."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from node.api import json_errors
from node.api_server import API_GUARD, ApiGuard, ApiLimits, ApiSite
from tests.integration.test_api_hostile import loopback_aliases

pytestmark = pytest.mark.skipif(not loopback_aliases(), reason="needs 127.0.0.2 on loopback")


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("secret " * 1000)


class Served:
    def __init__(self, guard: ApiGuard, site: ApiSite) -> None:
        self.guard = guard
        self.site = site

    async def connect(self, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.site.port, local_addr=(source, 0))


@pytest.fixture
async def served(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    limits: ApiLimits = request.param
    guard = ApiGuard(limits)
    app = web.Application(middlewares=[json_errors, guard.middleware()])
    app[API_GUARD] = guard
    app.router.add_get("/ok", ok)
    app.router.add_get("/boom", boom)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = ApiSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Served(guard, site)
    finally:
        await runner.cleanup()


async def ask(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
) -> tuple[int, Any]:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: somnet\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return status, json.loads(await asyncio.wait_for(reader.readexactly(length), 5))


async def wait_until(what: str, predicate: Any, timeout_s: float = 5) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


SMALL = ApiLimits(
    connections_max=3, connections_per_address_max=2, header_timeout_ms=5000, body_timeout_ms=5000
)


@pytest.mark.parametrize("served", [SMALL], indirect=True)
async def test_the_total_limit_refuses_the_connection_beyond_it_until_one_closes(
    served: Served,
) -> None:
    held = [await served.connect(a) for a in ("127.0.0.1", "127.0.0.1", "127.0.0.3")]
    await wait_until("3 connections admitted", lambda: served.guard.connection_count == 3)
    reader, writer = await served.connect("127.0.0.4")  # a new address, but 3 are open
    answer = await asyncio.wait_for(reader.read(), 5)  # the server answers and closes
    writer.close()
    assert answer.startswith(b"HTTP/1.1 503 ")
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["code"] == "TOO_MANY_CONNECTIONS"
    assert served.guard.refused_count == 1

    held.pop()[1].close()
    await wait_until("a connection released", lambda: served.guard.connection_count == 2)
    reader, writer = await served.connect("127.0.0.4")
    assert (await ask(reader, writer, "/ok"))[0] == 200
    writer.close()
    for _, held_writer in held:
        held_writer.close()


QUICK = ApiLimits(
    connections_max=10, connections_per_address_max=10, header_timeout_ms=300, body_timeout_ms=300
)


@pytest.mark.parametrize("served", [QUICK], indirect=True)
async def test_keep_alive_requests_each_get_the_deadline_and_an_idle_connection_closes(
    served: Served,
) -> None:
    reader, writer = await served.connect("127.0.0.1")
    loop = asyncio.get_running_loop()
    for _ in range(3):  # three requests, in all longer than one deadline, on one connection
        assert await ask(reader, writer, "/ok") == (200, {"ok": True})
        await asyncio.sleep(0.15)  # idle, within the deadline: the client's own pace
    idle_since = loop.time()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
    assert 0.05 <= loop.time() - idle_since <= 2
    assert served.guard.header_timeout_count == 1
    writer.close()
    await wait_until("the connection released", lambda: served.guard.connection_count == 0)


@pytest.mark.parametrize("served", [SMALL], indirect=True)
async def test_our_own_bug_is_a_json_500_and_one_bounded_log_line(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await served.connect("127.0.0.1")
    with caplog.at_level(logging.INFO):
        status, body = await ask(reader, writer, "/boom")
    writer.close()
    assert (status, body["code"]) == (500, "INTERNAL")
    assert "secret" not in body["message"]
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    line = errors[0].getMessage()
    assert "RuntimeError" in line and "test_api_guard.py" in line and "in boom" in line
    assert "\n" not in line and len(line) < 400
    assert errors[0].exc_info is None
