"""The API's HTTP server: aiohttp behind a guard that bounds connections and their time.

aiohttp parses and answers requests, but by itself it holds any number of connections
and waits as long as a client likes for a request head (issue 8, finding 9: 2,000 idle
half-sent requests used up the node's descriptors, and a client sending a byte a second
stayed connected for ever). The guard sits between the listening socket and aiohttp:

- A new connection over `connections_max`, or over `connections_per_address_max` for its
  client address (an IPv6 client counts by its /64, which one host usually holds), gets
  `503 TOO_MANY_CONNECTIONS` at once and is closed before aiohttp sees it.
- From the moment a connection opens, and again from the end of each request, the client
  has `header_timeout_ms` to deliver a complete request head; else the connection is
  aborted. The deadline does not restart with each byte, so a trickle cannot extend it,
  and an idle keep-alive connection lasts no longer than that either.
- Before any handler runs, the body is read in full, at most the application's
  `client_max_size`, within `body_timeout_ms` (else `408 REQUEST_TIMEOUT` and a close).
- Requests aiohttp cannot parse get a JSON 400 and one bounded log line, not a traceback.

While a handler runs (a `wait_ms` lookup may take a minute) no deadline applies: the
connection limits bound how many such requests can be open.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

__all__ = [
    "API_GUARD",
    "ECHO_CHARS_MAX",
    "ApiGuard",
    "ApiLimits",
    "ApiSite",
    "address_key",
    "bounded",
    "describe",
    "json_error",
]

log = logging.getLogger(__name__)

# Connections the kernel queues while the event loop is busy; a burst beyond it waits for
# the client's SYN retry instead of being refused.
BACKLOG = 512
# After answering a request whose body was not read to the end (413, 408), aiohttp reads
# and drops the rest for this long, so that the client can read the answer instead of a
# reset; long enough for a body of client_max_size on any link that can send it at all.
LINGERING_TIME_S = 2.0
# aiohttp's idle timer runs this much after our header deadline, so ours decides.
KEEPALIVE_BACKSTOP_S = 1.0
# aiohttp's defaults, stated: a longer request line or header field is a 400.
LINE_BYTES_MAX = 8190
FIELD_BYTES_MAX = 8190
# Text from a client (a path, a parser's complaint) is cut to this in logs and answers.
ECHO_CHARS_MAX = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiLimits:
    connections_max: int = 512
    """Open API connections in all; node.toml [api] connections_max."""
    connections_per_address_max: int = 256
    """Open API connections from one client address (an IPv6 /64)."""
    header_timeout_ms: int = 10_000
    """From a connection's opening or its previous response to a complete request head."""
    body_timeout_ms: int = 10_000
    """From a complete request head to its complete body."""

    def __post_init__(self) -> None:
        # node.config refuses other values with a message; these are our preconditions.
        assert 1 <= self.connections_per_address_max <= self.connections_max
        assert self.header_timeout_ms >= 1
        assert self.body_timeout_ms >= 1


def bounded(text: object) -> str:
    """`text` as a printable, quoted string of bounded length, for logs and answers."""
    shown = repr(str(text)[:ECHO_CHARS_MAX])
    return shown + "..." if len(str(text)) > ECHO_CHARS_MAX else shown


def json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


def raw_json_error(status: int, reason: str, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 answer that closes the connection, for use before aiohttp."""
    body = json.dumps({"code": code, "message": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Retry-After: 1\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


TOO_MANY_CONNECTIONS = raw_json_error(
    503,
    "Service Unavailable",
    "TOO_MANY_CONNECTIONS",
    "this node holds as many API connections as it may (in all or from your address); "
    "close idle connections or retry later",
)


def address_key(peername: object) -> str:
    """The client address a connection counts against: IPv4 as it is, an IPv4-mapped
    IPv6 address as its IPv4, other IPv6 by its /64."""
    if not isinstance(peername, tuple) or not peername:
        return "local"  # a Unix socket: one local client
    try:
        address = ipaddress.ip_address(str(peername[0]))
    except ValueError:
        return str(peername[0])
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class ApiGuard:
    """The API's open connections, counted per client address and in all, with counters
    that GET /v1/status shows."""

    def __init__(self, limits: ApiLimits) -> None:
        self.limits = limits
        self.connection_count = 0
        self._by_address: dict[str, int] = {}
        self._by_handler: dict[web.RequestHandler, GuardedConnection] = {}
        self.refused_count = 0
        self.header_timeout_count = 0
        self.body_timeout_count = 0

    def counters(self) -> dict[str, int]:
        return {
            "connections": self.connection_count,
            "connections_refused": self.refused_count,
            "header_timeouts": self.header_timeout_count,  # idle connections included
            "body_timeouts": self.body_timeout_count,
        }

    def admit(self, address: str) -> bool:
        """Count a new connection from `address`, or refuse it: False when over a limit."""
        count = self._by_address.get(address, 0)
        if (
            self.connection_count >= self.limits.connections_max
            or count >= self.limits.connections_per_address_max
        ):
            self.refused_count += 1
            return False
        self._by_address[address] = count + 1
        self.connection_count += 1
        assert self.connection_count <= self.limits.connections_max
        return True

    def track(self, handler: web.RequestHandler, connection: GuardedConnection) -> None:
        assert handler not in self._by_handler
        self._by_handler[handler] = connection

    def release(self, address: str, handler: web.RequestHandler) -> None:
        """Forget an admitted connection that closed."""
        assert self._by_handler.pop(handler) is not None
        count = self._by_address.pop(address)
        assert count >= 1
        if count > 1:
            self._by_address[address] = count - 1
        self.connection_count -= 1
        assert self.connection_count >= len(self._by_handler)

    def connection_of(self, request: web.BaseRequest) -> GuardedConnection | None:
        """The guarded connection a request came on; None when served without the guard
        (the aiohttp test server)."""
        return self._by_handler.get(request.protocol)

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        @web.middleware
        async def guard(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            connection = self.connection_of(request)
            if connection is not None:
                connection.head_received()
            try:
                if request.body_exists:
                    await self.read_body(request)
                return await handler(request)
            finally:
                if connection is not None:
                    connection.expect_head()

        return guard

    async def read_body(self, request: web.Request) -> None:
        """Read the whole body (request.read() keeps it for the handler) by the deadline.

        Raises:
            web.HTTPRequestTimeout: the body did not arrive within body_timeout_ms.
            web.HTTPRequestEntityTooLarge: it is longer than client_max_size.
            web.HTTPBadRequest: its framing is malformed, or the client went away.
        """
        timeout_ms = self.limits.body_timeout_ms
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                await request.read()
        except TimeoutError as exc:
            self.body_timeout_count += 1
            log.debug("api client=%s body timeout", request.remote)
            message = f"the request body did not arrive within {timeout_ms} ms"
            raise web.HTTPRequestTimeout(text=message) from exc
        except (web.RequestPayloadError, HttpProcessingError) as exc:
            raise web.HTTPBadRequest(text=f"malformed request body: {bounded(exc)}") from exc
        except ConnectionResetError as exc:  # the answer will not be sent; nothing to log
            raise web.HTTPBadRequest(text="the connection closed during the body") from exc


API_GUARD = web.AppKey("api_guard", ApiGuard)


class JsonErrorRequestHandler(web.RequestHandler):
    """aiohttp's connection protocol, answering what it cannot parse in JSON."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Called by aiohttp for a request it could not parse (400), and for an exception
        that escaped the application's middlewares (which json_errors prevents)."""
        if request.writer.output_size > 0:  # as aiohttp: an answer has begun, cut it
            raise ConnectionError("an answer was already sent in part")
        if status < 500:
            log.warning(
                "api client=%s malformed request: %s", request.remote, bounded(message or exc)
            )
            code, text = "BAD_REQUEST", f"malformed HTTP request: {bounded(message or exc)}"
        else:
            log.error("api client=%s unhandled: %s", request.remote, bounded(repr(exc)))
            code, text = "INTERNAL", "internal error; the node logged it"
        response = json_error(status, code, text)
        response.force_close()
        return response


class GuardedConnection(asyncio.Protocol):
    """One accepted socket: refused at once, or handed to aiohttp under the deadlines."""

    def __init__(self, guard: ApiGuard, server: web.Server) -> None:
        self._guard = guard
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._address = ""
        self._handler: web.RequestHandler | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, base_transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport, so no isinstance).
        transport = cast(asyncio.Transport, base_transport)
        self._address = address_key(transport.get_extra_info("peername"))
        if not self._guard.admit(self._address):
            log.debug("api client=%s refused: too many connections", self._address)
            transport.write(TOO_MANY_CONNECTIONS)  # a fresh socket's buffer takes it at once
            transport.close()
            return
        self._transport = transport
        self._handler = handler = self._new_handler()
        self._guard.track(handler, self)
        handler.connection_made(transport)
        self.expect_head()

    def _new_handler(self) -> web.RequestHandler:
        header_timeout_s = self._guard.limits.header_timeout_ms / 1000
        return JsonErrorRequestHandler(
            self._server,
            loop=self._loop,
            # aiohttp's own idle timer, only a backstop: ours fires first, and also covers
            # a partly sent head on aiohttp versions whose timer does not.
            keepalive_timeout=header_timeout_s + KEEPALIVE_BACKSTOP_S,
            tcp_keepalive=True,
            access_log=None,  # type: ignore[arg-type]  # aiohttp takes None: no access log
            max_line_size=LINE_BYTES_MAX,
            max_field_size=FIELD_BYTES_MAX,
            lingering_time=LINGERING_TIME_S,
            auto_decompress=False,  # a compressed body would be a bomb; bodies are small
        )

    def data_received(self, data: bytes) -> None:
        if self._handler is not None:
            self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        if self._handler is not None:
            self._handler.eof_received()
        return None  # as aiohttp: a client's half-close closes the connection

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        handler, self._handler, self._transport = self._handler, None, None
        if handler is not None:
            self._guard.release(self._address, handler)
            handler.connection_lost(exc)

    def head_received(self) -> None:
        """A complete request head arrived: no deadline while it is handled."""
        self._cancel_deadline()

    def expect_head(self) -> None:
        """Start the time the client has to send its next complete request head."""
        self._cancel_deadline()
        if self._transport is not None:
            delay_s = self._guard.limits.header_timeout_ms / 1000
            self._deadline = self._loop.call_later(delay_s, self._on_header_deadline)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _on_header_deadline(self) -> None:
        self._deadline = None
        assert self._transport is not None  # connection_lost cancels the deadline
        self._guard.header_timeout_count += 1
        log.debug("api client=%s header timeout", self._address)
        self._transport.abort()  # frees the socket now, even if the client reads nothing


class ApiSite(web.BaseSite):
    """Like web.TCPSite, with every connection accepted through the application's guard."""

    __slots__ = ("_host", "_port")

    def __init__(
        self, runner: web.AppRunner, host: str, port: int, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(runner, backlog=BACKLOG, ssl_context=ssl_context)
        self._host = host
        self._port = port

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        """The port listened on: the one asked for, or the one the system chose for 0."""
        if self._server is None:
            return self._port
        # asyncio's and uvloop's servers both have `sockets`; the abstract class does not.
        return int(cast(asyncio.Server, self._server).sockets[0].getsockname()[1])

    async def start(self) -> None:
        await super().start()
        runner = self._runner
        assert isinstance(runner, web.AppRunner)
        server = runner.server
        assert server is not None  # runner.setup() ran: BaseSite.__init__ checks it
        guard = runner.app[API_GUARD]
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: GuardedConnection(guard, server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=True,
        )


def describe(exc: BaseException) -> str:
    """One bounded line: the exception and where it was raised."""
    where = ""
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    if frame is not None:
        code = frame.tb_frame.f_code
        where = f" at {code.co_filename.rsplit('/', 1)[-1]}:{frame.tb_lineno} in {code.co_name}"
    return f"{type(exc).__name__}: {bounded(exc)}{where}"
