"""An on-path relay for tests: a TCP proxy between a peer's dialer and a node's peer port
that holds no key. It reads the WebSocket frames the dialer sends (unmasking them, as
anyone on the path can), records their payloads, and can tamper with them: flip a byte
in a frame, insert a frame of its own, or send a frame twice.

The dialer's first two binary messages are its handshake; "data frames" are the binary
messages after them, counted from 0 on each connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

OPCODE_BINARY = 0x2
HANDSHAKE_MESSAGES = 2

Tamper = Callable[[int, bytes], list[bytes]]
"""(data frame index, payload) -> the payloads to forward in its place, in order."""


def unmask(payload: bytes, mask: bytes) -> bytes:
    if not payload:
        return payload
    size = len(payload)
    stream = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(size, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client-to-server frame (mask 0000, which leaves the payload as is)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return header + b"\0\0\0\0" + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    """(first header byte, opcode, unmasked payload) of the next client frame."""
    first, second = await reader.readexactly(2)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    mask = await reader.readexactly(4) if second & 0x80 else b"\0\0\0\0"
    return first, first & 0x0F, unmask(await reader.readexactly(size), mask)


@dataclass
class Relay:
    """Listens on 127.0.0.1; forwards every connection to `target` (host, port)."""

    target: tuple[str, int]
    port: int = 0
    payloads: list[bytes] = field(default_factory=list)
    """Every binary payload dialers sent, handshakes included, as the relay saw it."""
    tamper: Tamper | None = None
    """Applied to the data frames of the next connection only, then cleared."""
    connections: int = 0
    closed_by_listener: int = 0
    """Connections that the listener (not the dialer) closed first."""
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        """Close the listening socket and every relayed connection; wait until done."""
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()  # each connection's pumps see the end and finish
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def seen(self) -> bytes:
        return b"".join(self.payloads)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        tamper, self.tamper = self.tamper, None
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)
            return
        self._writers.add(up_writer)
        down = asyncio.create_task(self._pump_raw(up_reader, writer))
        up = asyncio.create_task(self._pump_frames(reader, up_writer, tamper))
        try:
            done, _ = await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
            if down in done:
                self.closed_by_listener += 1
        finally:
            for t in (down, up):
                t.cancel()
            await asyncio.gather(down, up, return_exceptions=True)
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await w.wait_closed()
                self._writers.discard(w)
            self._tasks.discard(task)

    async def _pump_raw(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    async def _pump_frames(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tamper: Tamper | None
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")  # the HTTP upgrade request
            writer.write(head)
            binary_count = 0
            while True:
                first, opcode, payload = await read_frame(reader)
                if opcode != OPCODE_BINARY:
                    writer.write(client_frame(first & 0x0F, payload))
                    await writer.drain()
                    continue
                self.payloads.append(payload)
                index = binary_count - HANDSHAKE_MESSAGES
                binary_count += 1
                forwarded = [payload] if tamper is None or index < 0 else tamper(index, payload)
                for out in forwarded:
                    writer.write(client_frame(OPCODE_BINARY, out))
                await writer.drain()
