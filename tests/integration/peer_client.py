"""A test's own peer link to a node: a genuine handshake with a participant's real key,
then frames of the test's choosing (well formed or not)."""

from __future__ import annotations

import asyncio

import aiohttp
import msgpack
from nacl.signing import SigningKey

from node.transport import PEER_PATH, TAG_DIALER


class HandshakeRefused(Exception):
    """The node did not complete the handshake."""


class PeerClient:
    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session = session
        self.ws = ws

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        chain_id: str,
        as_id: str,
        signing_key: SigningKey,
        target_id: str,
        target_key: bytes,
    ) -> PeerClient:
        """Raises:
        HandshakeRefused: the node closed the link or refused the upgrade.
        """
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(url + PEER_PATH, max_msg_size=0)
            nonce = b"\1" * 32
            await ws.send_bytes(msgpack.packb([chain_id, as_id, target_id, nonce]))
            reply = await ws.receive()
            if reply.type != aiohttp.WSMsgType.BINARY:
                raise HandshakeRefused(f"{reply.type.name} {reply.data!r}")
            listener_nonce, _ = msgpack.unpackb(reply.data)
            signed = msgpack.packb([TAG_DIALER, chain_id, as_id, target_id, listener_nonce, nonce])
            await ws.send_bytes(msgpack.packb([signing_key.sign(signed).signature]))
        except aiohttp.ClientError as exc:
            await session.close()
            raise HandshakeRefused(str(exc)) from exc
        except BaseException:
            await session.close()
            raise
        return cls(session, ws)

    async def send_payloads(self, payloads: list[bytes]) -> None:
        """One frame carrying `payloads`, as a node would batch them."""
        await self.ws.send_bytes(msgpack.packb(payloads, use_bin_type=True))

    async def closed_within(self, timeout_s: float) -> bool:
        """True if the node closes the link within `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    msg = await self.ws.receive()
                    if msg.type in (
                        aiohttp.WSMsgType.CLOSE,
                        aiohttp.WSMsgType.CLOSING,
                        aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.ERROR,
                    ):
                        return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()
