"""The node package's exceptions: one base, NodeError, and a subclass per kind of fault."""

__all__ = ["NodeError"]


class NodeError(Exception):
    """Base of every exception the node package raises on purpose."""
