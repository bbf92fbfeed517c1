"""`somnet health --home DIR`: exit 0 while the node at DIR answers its own API.

The container image's HEALTHCHECK runs this inside the container, so it asks the node
where the node itself listens (node.toml and SOMNET_* overrides, read the way the node
reads them), signed with the node's own key, with a short deadline: a node that is
starting, stopped or stuck is unhealthy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.api_client import ApiError, blocking, client_for_home
from node.config import ConfigError
from node.keys import KeyFileError

__all__ = ["register"]

TIMEOUT_S = 3.0
"""Below the image's HEALTHCHECK --timeout (4 s), so a hung node fails with a message."""


def cmd_health(args: argparse.Namespace) -> int:
    try:
        client = client_for_home(Path(args.home), timeout_s=TIMEOUT_S)
    except (ConfigError, KeyFileError) as exc:
        print(f"somnet health: {exc}", file=sys.stderr)
        return 1
    node_id = client.credentials.participant_id
    try:
        status = blocking(client, lambda api: api.status())
    except ApiError as exc:
        print(f"somnet health: {client.base_url}: {exc}", file=sys.stderr)
        return 1
    if status.get("node_id") != node_id:
        print(f"somnet health: {client.base_url} did not answer as {node_id}", file=sys.stderr)
        return 1
    print(f"healthy node={node_id} height={status.get('height')}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    health = subparsers.add_parser("health", help="exit 0 while the node answers its API")
    health.add_argument("--home", required=True, help="the node's directory (node.toml)")
    health.set_defaults(handler=cmd_health)
