"""`somnet init --compose`: the network as containers of the somnet image (deploy/Dockerfile).

DIR/compose.yaml runs one service per participant, named by its id, so that inside the
compose network a peer is reached at `<id>:26656`, the address genesis gives it. Each
service's volume is its home folder DIR/<id> (node.toml, genesis.json, node_key.json,
data/), bound at /data and owned by the image's user (uid 10001): the key stays 0600 and
readable only by the node, and a container removed and created again finds its store.
Only the bank API is published, on the host address given to `somnet init --host`
(127.0.0.1 by default); the peer port stays inside the compose network.

The file uses only what both `docker compose` and podman-compose 1.0 understand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from cli.entry import NodeEntry

__all__ = [
    "API_PORT",
    "CONTAINER_GID",
    "CONTAINER_UID",
    "IMAGE_DEFAULT",
    "PEER_PORT",
    "ComposeOptions",
    "compose_next_steps",
    "compose_yaml",
    "write_compose",
]

PEER_PORT = 26656  # deploy/Dockerfile EXPOSE
API_PORT = 8080
CONTAINER_UID = 10001  # deploy/Dockerfile USER
CONTAINER_GID = 10001
try:
    IMAGE_DEFAULT = f"somnet:{version('somnet')}"  # what `make image` tags
except PackageNotFoundError:  # a working copy that was never installed
    IMAGE_DEFAULT = "somnet:latest"


@dataclass(frozen=True, slots=True, kw_only=True)
class ComposeOptions:
    image: str = IMAGE_DEFAULT


def compose_yaml(entries: list[NodeEntry], options: ComposeOptions) -> str:
    """The compose file: one service per node, in the order of `entries`."""
    lines = [
        "# Written by `somnet init --compose`: one node per service, its home ./<id> at /data",
        "# (owned by uid 10001, the image's user). Peers reach each other by service name;",
        "# only the bank APIs are published. Start: docker compose up -d (or podman-compose).",
        "services:",
    ]
    for entry in entries:
        published = urlsplit(entry.api_url)
        assert published.hostname is not None and published.port is not None
        lines += [
            f"  {entry.node_id}:",
            f'    image: "{options.image}"',
            f"    hostname: {entry.node_id}",
            "    read_only: true",
            "    tmpfs:",
            "      - /tmp",
            "    volumes:",
            f"      - ./{entry.node_id}:/data",
            "    ports:",
            f'      - "{published.hostname}:{published.port}:{API_PORT}"',
            "    restart: unless-stopped",
        ]
    return "\n".join(lines) + "\n"


def write_compose(out: Path, entries: list[NodeEntry], options: ComposeOptions) -> None:
    """Write DIR/compose.yaml and hand each home to the container user if we may."""
    (out / "compose.yaml").write_text(compose_yaml(entries, options))
    if os.geteuid() == 0:
        for entry in entries:
            hand_over(entry.home)


def hand_over(home: Path) -> None:
    """chown -R the home to the image's user: the node must read its key (0600) and
    write its store, and nobody else on the host but root may read the key."""
    for path in [home, *home.rglob("*")]:
        os.chown(path, CONTAINER_UID, CONTAINER_GID, follow_symlinks=False)


def compose_next_steps(out: Path) -> str:
    """What to type next; the homes need the container user first unless we were root."""
    start = f"cd {out} && docker compose up -d     (or: podman-compose up -d)"
    if os.geteuid() == 0:
        return f"next: {start}"
    owner = f"{CONTAINER_UID}:{CONTAINER_GID}"
    return (
        "next: give each home to the container user, then start the network:\n"
        f"  sudo chown -R {owner} {out}/*/            # docker or rootful podman\n"
        f"  podman unshare chown -R {owner} {out}/*/  # rootless podman\n"
        f"  {start}"
    )
