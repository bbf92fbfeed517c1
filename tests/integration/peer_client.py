"""A test's own peer link to a node: a genuine handshake with a participant's real key,
then frames of the test's choosing (well formed or not), sealed as a node seals them."""

from __future__ import annotations

import asyncio

import aiohttp
import msgpack
from nacl.signing import SigningKey

from node.channel import Channel, ChannelError
from node.transport import PEER_PATH, dial_handshake


class HandshakeRefused(Exception):
    """The node did not complete the handshake."""


class PeerClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        ws: aiohttp.ClientWebSocketResponse,
        channel: Channel,
    ) -> None:
        self.session = session
        self.ws = ws
        self.channel = channel

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
            channel = await dial_handshake(
                ws,
                chain_id=chain_id,
                self_id=as_id,
                signing_key=signing_key,
                peer_id=target_id,
                peer_key=target_key,
            )
        except (aiohttp.ClientError, ChannelError) as exc:
            await session.close()
            raise HandshakeRefused(str(exc)) from exc
        except BaseException:
            await session.close()
            raise
        return cls(session, ws, channel)

    async def send_payloads(self, payloads: list[bytes]) -> None:
        """One frame carrying `payloads`, as a node would batch and seal them."""
        await self.ws.send_bytes(self.channel.send.seal(msgpack.packb(payloads, use_bin_type=True)))

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
