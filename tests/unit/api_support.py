"""The API of an in-process node (tests/unit/test_driver.py) on a real socket, called
through the project's own signed client (cli/api_client.py)."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from cli.api_client import ApiClient, Credentials
from tests.unit.ledger_support import key_of


class SignedClient:
    """Like aiohttp's TestClient (get, post, close), every request signed as a participant."""

    def __init__(self, server: TestServer, api: ApiClient) -> None:
        self.server = server
        self.api = api

    @classmethod
    async def open(cls, app: web.Application, participant_id: str) -> SignedClient:
        server = TestServer(app)
        await server.start_server()
        api = ApiClient(
            str(server.make_url("")), Credentials(participant_id, key_of(participant_id))
        )
        await api.__aenter__()
        return cls(server, api)

    def as_participant(self, participant_id: str) -> ApiClient:
        """Another client of the same server (enter it with `async with`)."""
        return ApiClient(self.api.base_url, Credentials(participant_id, key_of(participant_id)))

    async def get(self, target: str, **options: Any) -> aiohttp.ClientResponse:
        return await self.api.request("GET", target, **options)

    async def post(
        self, target: str, *, data: bytes = b"", headers: dict[str, str] | None = None
    ) -> aiohttp.ClientResponse:
        return await self.api.request("POST", target, body=data, headers=headers)

    async def close(self) -> None:
        await self.api.close()
        await self.server.close()
