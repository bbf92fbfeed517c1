"""One node of a network directory that `somnet init` writes (network.json lists them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["NodeEntry"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeEntry:
    node_id: str
    role: str
    home: Path
    api_url: str  # as the host reaches it
    peer_url: str
