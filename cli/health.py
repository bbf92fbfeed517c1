"""`somnet health --home DIR`: exit 0 while the node at DIR answers its own API.

The container image's HEALTHCHECK runs this inside the container, so it asks the node
where the node itself listens (node.toml and SOMNET_* overrides, read the way the node
reads them), with a short deadline: a node that is starting, stopped or stuck is unhealthy.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from node.config import ConfigError, load_config

__all__ = ["local_api_url", "register"]

TIMEOUT_S = 3.0
"""Below the image's HEALTHCHECK --timeout (4 s), so a hung node fails with a message."""


def local_api_url(api_listen: str) -> str:
    """The URL at which this machine reaches an API listening on `api_listen` (host:port):
    a wildcard address is reached through loopback."""
    host, _, port = api_listen.rpartition(":")
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def cmd_health(args: argparse.Namespace) -> int:
    try:
        config = load_config(Path(args.home))
    except ConfigError as exc:
        print(f"somnet health: {exc}", file=sys.stderr)
        return 1
    url = f"{local_api_url(config.api_listen)}/v1/status"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            status = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"somnet health: {url}: {exc}", file=sys.stderr)
        return 1
    if not isinstance(status, dict) or status.get("node_id") != config.node_id:
        print(f"somnet health: {url} did not answer as {config.node_id}", file=sys.stderr)
        return 1
    print(f"healthy node={config.node_id} height={status.get('height')}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    health = subparsers.add_parser("health", help="exit 0 while the node answers its API")
    health.add_argument("--home", required=True, help="the node's directory (node.toml)")
    health.set_defaults(handler=cmd_health)
