"""A small blocking HTTP client for the node API (the CLI needs no event loop)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

__all__ = ["ApiError", "get_json", "post_bytes"]

TIMEOUT_S = 65.0


class ApiError(Exception):
    """The node could not be reached, or answered with an error object."""

    def __init__(self, message: str, *, status: int = 0, body: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.body = body or {}


def _call(request: urllib.request.Request) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            document = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read())
        except ValueError:
            body = {}
        code = body.get("code", "HTTP_ERROR")
        raise ApiError(f"{code}: {body.get('message', exc.reason)}", status=exc.code,
                       body=body) from exc  # fmt: skip
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ApiError(f"cannot reach {request.full_url}: {exc}") from exc
    if not isinstance(document, dict):
        raise ApiError(f"{request.full_url}: expected a JSON object")
    return document


def get_json(url: str) -> dict[str, Any]:
    return _call(urllib.request.Request(url))


def post_bytes(url: str, body: bytes) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/octet-stream"}
    )
    return _call(request)
