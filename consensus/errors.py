"""The one exception family of the consensus package."""

from __future__ import annotations

__all__ = ["ConfigError", "ConsensusError", "WireError"]


class ConsensusError(Exception):
    """Base of every error raised by `consensus`."""


class ConfigError(ConsensusError):
    """A configuration or validator set that cannot work."""


class WireError(ConsensusError):
    """Bytes from outside that do not decode to a well-formed message."""
