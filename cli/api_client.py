"""The one client of the bank API: typed, async, every request signed (node/api_auth.py).

The CLI, `somnet load` and the tests talk to nodes only through `ApiClient`, so the
`/v1/...` paths and the request signature exist here and nowhere else. Callers without
an event loop (the CLI's commands, synchronous tests) make one call with `blocking`.

    async with ApiClient(url, Credentials.from_home(home)) as api:
        result = await api.submit(tx)
        final = await api.transaction(result["tx_hash"], wait_ms=30_000)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import secrets
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import aiohttp
import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver
from http_message_signatures.algorithms import ED25519
from nacl.signing import SigningKey
from yarl import URL

from node.api_auth import COVERED_COMPONENTS, SIGNATURE_LABEL
from node.config import load_config
from node.keys import load_key_file

__all__ = [
    "ApiClient",
    "ApiError",
    "Credentials",
    "EventStreamParser",
    "ServerSentEvent",
    "blocking",
    "client_for_home",
    "local_api_url",
]

T = TypeVar("T")
Json = dict[str, Any]
TIMEOUT_S = 65.0  # above the longest wait a node grants (60 s)
# An event stream sends something at least every 15 s (a keepalive comment); silence for
# three of those means the connection is gone without a word.
STREAM_IDLE_S_MAX = 45.0
EVENT_BYTES_MAX = 64 * 1024 * 1024  # one event (a block's own transactions), at most
LINE_END = re.compile(rb"\r\n|\n|\r")


class ApiError(Exception):
    """The node could not be reached, or answered with an error object {code, message}."""

    def __init__(self, message: str, *, status: int = 0, body: Json | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}

    @property
    def code(self) -> str:
        return str(self.body.get("code", "UNREACHABLE" if self.status == 0 else "HTTP_ERROR"))


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who signs the requests: a participant id and its Ed25519 key."""

    participant_id: str
    signing_key: SigningKey

    @classmethod
    def from_home(cls, home: Path) -> Credentials:
        """The credentials of the participant whose node lives at `home`.

        Raises:
            node.config.ConfigError, node.keys.KeyFileError: unreadable or invalid.
        """
        config = load_config(home)
        return cls(config.node_id, load_key_file(config.key_file))


class _OutgoingRequest:
    """The view of a request to be sent that the signature library reads and writes."""

    def __init__(self, method: str, url: str, headers: dict[str, str]) -> None:
        self.method = method
        self.url = url
        self.headers = headers


class ApiClient:
    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout_s: float = TIMEOUT_S,
        connections_max: int = 100,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        private_key = Ed25519PrivateKey.from_private_bytes(bytes(credentials.signing_key))
        resolver = MappingKeyResolver(
            public_keys={}, private_keys={credentials.participant_id: private_key}
        )
        self._signer = HTTPMessageSigner(signature_algorithm=ED25519, key_resolver=resolver)
        self._ssl = ssl_context
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._connections_max = connections_max
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        connector = aiohttp.TCPConnector(limit=self._connections_max, ssl=self._ssl or True)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def signed_headers(
        self, method: str, target: str, body: bytes, *, created: int | None = None
    ) -> dict[str, str]:
        """The Content-Digest, Signature-Input and Signature of one request to `target`
        (path and query); `created` (Unix seconds) is now unless given."""
        import datetime

        message = _OutgoingRequest(method, f"{self.base_url}{target}", {})
        when = None
        if created is not None:
            when = datetime.datetime.fromtimestamp(created, tz=datetime.UTC)
        self._signer.sign(
            message,
            key_id=self.credentials.participant_id,
            created=when,
            nonce=secrets.token_urlsafe(24),
            label=SIGNATURE_LABEL,
            covered_component_ids=COVERED_COMPONENTS,
            body=body,
        )
        return message.headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        client_timeout: aiohttp.ClientTimeout | None = None,
    ) -> aiohttp.ClientResponse:
        """Send one signed request; the caller reads (and releases) the response.
        `client_timeout` replaces the client's own (a total of TIMEOUT_S) for this request."""
        if self._session is None:
            raise RuntimeError("use the client in `async with`")
        target = path
        if query:
            target += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        all_headers = self.signed_headers(method, target, body)
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        all_headers.update(headers or {})
        url = URL(f"{self.base_url}{target}", encoded=True)
        try:
            return await self._session.request(
                method, url, data=body, headers=all_headers, timeout=client_timeout or self._timeout
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ApiError(f"cannot reach {self.base_url}: {exc!r}") from exc

    async def call(self, method: str, path: str, **options: Any) -> Json:
        """One signed request whose answer is a JSON object; errors raise ApiError."""
        response = await self.request(method, path, **options)
        async with response:
            if response.status >= 400:
                await self._raise_error(response, path)
            return await self._json_object(response, path)

    # The routes, one method each (the OpenAPI document, node/openapi.json, has them all).

    async def status(self) -> Json:
        return await self.call("GET", "/v1/status")

    async def submit(self, tx: bytes) -> Json:
        """202 {tx_hash, status: pending} once kept, or the first result of these bytes."""
        return await self.call(
            "POST", "/v1/transactions", body=tx, content_type="application/octet-stream"
        )

    async def submit_batch(self, txs: Sequence[bytes]) -> list[Json]:
        """One result per transaction, in order: {tx_hash, status} or {code, message}."""
        body = msgpack.packb(list(txs), use_bin_type=True)
        result = await self.call(
            "POST", "/v1/transactions/batch", body=body, content_type="application/msgpack"
        )
        return list(result["results"])

    async def transaction(self, tx_hash: str, *, wait_ms: int = 0) -> Json:
        query = {"wait_ms": wait_ms} if wait_ms else None
        return await self.call("GET", f"/v1/transactions/{tx_hash}", query=query)

    async def transaction_proof(self, tx_hash: str) -> Json:
        return await self.call("GET", f"/v1/transactions/{tx_hash}/proof")

    async def account(self, account_id: str) -> Json:
        return await self.call("GET", f"/v1/accounts/{account_id}")

    async def account_proof(self, account_id: str) -> Json:
        return await self.call("GET", f"/v1/accounts/{account_id}/proof")

    async def statement(self, account_id: str, **query: int) -> Json:
        return await self.call("GET", f"/v1/accounts/{account_id}/transactions", query=query)

    async def block(self, height_or_hash: int | str) -> Json:
        return await self.call("GET", f"/v1/blocks/{height_or_hash}")

    async def validators(self) -> Json:
        return await self.call("GET", "/v1/validators")

    async def governance(self) -> Json:
        """Participants, validator sets per height, officers and frozen accounts."""
        return await self.call("GET", "/v1/governance")

    async def evidence(self, *, from_height: int = 0) -> Json:
        return await self.call("GET", "/v1/evidence", query={"from_height": from_height})

    async def anchors(self) -> Json:
        return await self.call("GET", "/v1/anchors")

    async def anchor(self, height: int) -> Json:
        return await self.call("GET", f"/v1/anchors/{height}")

    async def openapi(self) -> Json:
        return await self.call("GET", "/v1/openapi.json")

    async def events(self, *, from_height: int = 1) -> AsyncGenerator[Json, None]:
        """The finalized events from `from_height` on, for as long as the node streams
        them (server-sent events): the data of each `block` event, in height order. It
        ends when the node ends the stream (it stops); resume after that, or after an
        ApiError, from the last height + 1.

        Raises:
            ApiError: the node refused the stream (its error object), could not be
                reached, or the connection broke or fell silent.
        """
        response = await self.request(
            "GET",
            "/v1/events",
            query={"from_height": from_height},
            headers={"Accept": "text/event-stream"},
            client_timeout=aiohttp.ClientTimeout(total=None, sock_read=STREAM_IDLE_S_MAX),
        )
        async with response:
            if response.status >= 400:
                await self._raise_error(response, "/v1/events")
            parser = EventStreamParser()
            try:
                async for chunk in response.content.iter_any():
                    for event in parser.feed(chunk):
                        if event.type == "block":
                            yield json.loads(event.data)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                message = f"event stream from {self.base_url} broke: {exc!r}"
                raise ApiError(message) from exc
            except ValueError as exc:  # not JSON, not UTF-8, an event beyond its bound
                message = f"event stream from {self.base_url}: {exc}"
                raise ApiError(message, status=response.status) from exc

    @staticmethod
    async def _json_object(response: aiohttp.ClientResponse, path: str) -> Json:
        try:
            document = await response.json(content_type=None)
        except (ValueError, aiohttp.ClientError, TimeoutError) as exc:
            message = f"{path}: not a JSON answer ({exc!r})"
            raise ApiError(message, status=response.status) from exc
        if not isinstance(document, dict):
            raise ApiError(f"{path}: expected a JSON object", status=response.status)
        return document

    @classmethod
    async def _raise_error(cls, response: aiohttp.ClientResponse, path: str) -> NoReturn:
        document = await cls._json_object(response, path)
        message = f"{document.get('code', 'HTTP_ERROR')}: {document.get('message', '')}"
        raise ApiError(message, status=response.status, body=document)


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    type: str  # "message" unless an `event:` line named it
    data: str  # the `data:` lines, joined by newlines
    id: str | None  # the last `id:` seen in the stream, so far


class EventStreamParser:
    """Server-sent events from bytes as they arrive (the WHATWG HTML event stream format):
    lines end with CRLF, LF or CR; `:` starts a comment; `data:` lines add up; an empty
    line ends the event; an event without data is no event. Nothing is held beyond
    `bytes_max`: an event (or a line) larger than that raises ValueError."""

    def __init__(self, bytes_max: int = EVENT_BYTES_MAX) -> None:
        self.bytes_max = bytes_max
        self.last_id: str | None = None
        self._pending = b""  # the start of a line whose end has not come yet
        self._data: list[str] = []
        self._data_size = 0
        self._type = ""

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """The events that `chunk` completes, in order."""
        text = self._pending + chunk
        # A CR at the very end may be the first half of a CRLF: wait for the next byte.
        cut = len(text) - 1 if text.endswith(b"\r") else len(text)
        *lines, rest = LINE_END.split(text[:cut])
        self._pending = rest + text[cut:]
        if len(self._pending) > self.bytes_max:
            raise ValueError(f"an event stream line beyond {self.bytes_max} bytes")
        events = []
        for line in lines:
            event = self._line(line.decode("utf-8"))
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: a keepalive
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_size += len(value) + 1
            if self._data_size > self.bytes_max:
                raise ValueError(f"an event beyond {self.bytes_max} bytes")
        elif name == "event":
            self._type = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None  # `retry:` and unknown fields are ignored, as the format says

    def _dispatch(self) -> ServerSentEvent | None:
        data, self._data, self._data_size = self._data, [], 0
        event_type, self._type = self._type or "message", ""
        if not data:
            return None
        return ServerSentEvent(type=event_type, data="\n".join(data), id=self.last_id)


def local_api_url(api_listen: str, *, tls: bool = False) -> str:
    """The URL at which this machine reaches an API listening on `api_listen` (host:port):
    a wildcard address is reached through loopback."""
    host, _, port = api_listen.rpartition(":")
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


def client_for_home(
    home: Path, *, api_url: str | None = None, ca_file: Path | None = None, **options: Any
) -> ApiClient:
    """A client of the node at `home` (or of `api_url`), signing as that node's participant.

    Raises:
        node.config.ConfigError, node.keys.KeyFileError: unreadable or invalid.
    """
    config = load_config(home)
    credentials = Credentials(config.node_id, load_key_file(config.key_file))
    tls = config.api_tls_cert_file is not None
    ssl_context = None
    if ca_file is not None or tls:
        # Trust the CA named, else the node's own certificate (self-signed is common).
        ssl_context = ssl.create_default_context(cafile=ca_file or config.api_tls_cert_file)
        ssl_context.check_hostname = ca_file is not None
    url = api_url or local_api_url(config.api_listen, tls=tls)
    return ApiClient(url, credentials, ssl_context=ssl_context, **options)


def blocking(client: ApiClient, call: Callable[[ApiClient], Awaitable[T]]) -> T:
    """One call on a fresh event loop, for callers that have none (or that must block the
    one they run in, as synchronous helpers called from async tests do: then the call runs
    on its own loop in a worker thread)."""

    async def run() -> T:
        async with client:
            return await call(client)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as worker:
        return worker.submit(lambda: asyncio.run(run())).result()
