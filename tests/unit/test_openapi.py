"""The OpenAPI document (node/openapi.json) and the routes the API serves are the same set,
and the document is served, signed, as installed.

The comparison is by method and path template with the parameters' names left out
(`/v1/blocks/{}`): a parameter's name is the document's word for it, never on the wire,
while a route the document lacks (or describes without serving) breaks a bank's client.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from node.api import build_api, openapi_document
from node.errors import RefusalCode
from tests.unit.api_support import SignedClient, node_api_context
from tests.unit.test_driver import Node, make_node

DOCUMENT: dict[str, Any] = json.loads(openapi_document())
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def template(path: str) -> str:
    """The path with its parameters' names left out: `/v1/blocks/{height}` -> `/v1/blocks/{}`."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def documented_operations() -> dict[tuple[str, str], str]:
    """(METHOD, template) -> the path as the document spells it."""
    return {
        (method.upper(), template(path)): path
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def served_operations(app: web.Application) -> dict[tuple[str, str], str]:
    """(METHOD, template) -> the route as the router spells it; aiohttp's automatic HEAD
    of every GET is left out (the document describes the GET)."""
    served = {}
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        canonical = route.resource.canonical if route.resource is not None else "?"
        served[(route.method, template(canonical))] = canonical
    return served


def api_of(node: Node) -> web.Application:
    return build_api(node_api_context(node))


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:  # the driver needs a running loop
    node = make_node(tmp_path, "bank-e")
    yield node
    node.store.close()


@pytest.fixture
async def client(node: Node) -> AsyncIterator[SignedClient]:
    client = await SignedClient.open(api_of(node), "bank-e")
    yield client
    await client.close()


async def test_every_served_route_is_documented_and_every_documented_route_is_served(
    node: Node,
) -> None:
    documented = documented_operations()
    served = served_operations(api_of(node))
    undocumented = sorted(f"{m} {served[m, t]}" for m, t in served.keys() - documented.keys())
    unserved = sorted(f"{m} {documented[m, t]}" for m, t in documented.keys() - served.keys())
    assert not undocumented and not unserved, (
        "node/openapi.json and build_api's router differ:\n"
        f"  served but not in the document: {undocumented or 'none'}\n"
        f"  in the document but not served: {unserved or 'none'}"
    )


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method.upper(), path, operation


def resolve(reference: dict[str, Any]) -> dict[str, Any]:
    """A `#/components/...` reference's target (or the object itself)."""
    if "$ref" not in reference:
        return reference
    target: Any = DOCUMENT
    for part in reference["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    assert isinstance(target, dict)
    return target


def test_every_operation_is_signed_and_answers_401_and_429_as_errors() -> None:
    assert DOCUMENT["openapi"].startswith("3.1.")
    scheme = DOCUMENT["components"]["securitySchemes"]["Signature"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Signature")
    assert "RFC 9421" in scheme["description"]
    assert DOCUMENT["security"] == [{"Signature": []}]
    for method, path, operation in operations():
        assert "security" not in operation, f"{method} {path} must not override the signature"
        for status in ("401", "429"):
            response = resolve(operation["responses"][status])
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def test_the_error_codes_include_every_refusal_and_every_refusal_of_the_signature() -> None:
    codes = DOCUMENT["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
    expected = {code.name for code in RefusalCode}
    expected |= {"SIGNATURE_MISSING", "SIGNATURE_INVALID", "SIGNATURE_STALE"}
    expected |= {"SIGNATURE_REPLAYED", "RATE_LIMITED", "TOO_MANY_WAITS", "FORBIDDEN"}
    assert expected <= set(codes), expected - set(codes)


def test_every_reference_resolves_and_metrics_is_not_on_the_api() -> None:
    text = json.dumps(DOCUMENT)
    for reference in set(re.findall(r'"\$ref": "([^"]+)"', text)):
        assert resolve({"$ref": reference}), reference
    assert not any(path.startswith("/metrics") for path in DOCUMENT["paths"])


async def test_the_document_is_served_as_installed_and_only_to_a_signed_request(
    client: SignedClient,
) -> None:
    response = await client.get("/v1/openapi.json")
    async with response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert await response.json() == DOCUMENT
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{client.api.base_url}/v1/openapi.json") as unsigned,
    ):
        assert unsigned.status == 401
        assert (await unsigned.json())["code"] == "SIGNATURE_MISSING"
