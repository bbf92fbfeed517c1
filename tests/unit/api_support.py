"""The API of an in-process node (tests/unit/test_driver.py) on a real socket, called
through the project's own signed client (cli/api_client.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from cli.api_client import ApiClient, Credentials
from node.api import ApiContext
from node.intake import Intake
from tests.unit.ledger_support import key_of

if TYPE_CHECKING:
    from tests.unit.test_driver import Node


def node_api_context(
    node: Node,
    *,
    broadcast: Callable[[bytes], None] = lambda payload: None,
    remittance_key: bool = False,
) -> ApiContext:
    """What the API of an in-process bank node reads (its intake gossips to `broadcast`);
    with `remittance_key`, the node opens the remittances sealed to it."""
    intake = Intake(
        mempool=node.driver.mempool,
        store=node.store,
        broadcast=broadcast,
        wake=node.driver.note_transactions,
        caught_up=node.driver.caught_up,
        proposes=False,
    )
    return ApiContext(
        driver=node.driver,
        intake=intake,
        connected_peers=list,
        on_store_failure=lambda exc: pytest.fail(f"the store failed: {exc}"),
        remittance_key=key_of(node.driver.node_id) if remittance_key else None,
    )


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
