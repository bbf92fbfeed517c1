"""The consensus core's identifiers: heights, rounds and validator ids (NewTypes, so that
mypy tells them apart). Their own module, below both messages and the validator set."""

from __future__ import annotations

from typing import NewType

__all__ = ["Height", "Round", "ValidatorId"]

Height = NewType("Height", int)
Round = NewType("Round", int)
ValidatorId = NewType("ValidatorId", str)
