"""The node package's exceptions: one base, NodeError, and a subclass per kind of fault.

Transaction refusals carry a stable `RefusalCode`: its name is the code the API shows,
its number is what a stored `TxResult` keeps. Numbers and names never change meaning.
"""

from __future__ import annotations

import enum

__all__ = ["BlockError", "GenesisError", "NodeError", "RefusalCode", "TxRefused"]


class NodeError(Exception):
    """Base of every exception the node package raises on purpose."""


class RefusalCode(enum.IntEnum):
    """Why a transaction was refused. Stable: append new codes, never renumber."""

    MALFORMED = 1  # bytes do not decode to a well-formed transaction
    WRONG_CHAIN = 2  # signed for another chain id
    BAD_SIGNATURE = 3  # signature does not verify with the signer's genesis key
    NOT_AUTHORIZED = 4  # signer unknown, or not allowed to do this (owner, issuer)
    UNKNOWN_ACCOUNT = 5  # an account named in the transaction is not in genesis
    INVALID_AMOUNT = 6  # not an integer in 1..2**63-1 (floats and bools included)
    INSUFFICIENT_FUNDS = 7  # the debited balance is smaller than the amount
    DUPLICATE = 8  # (signer, UETR) already used by a different transaction
    EXPIRED = 9  # the block height is past the transaction's expiry height
    EXPIRY_TOO_FAR = 10  # expiry height more than EXPIRY_HEIGHTS_MAX ahead
    TOO_MANY_LEGS = 11  # a payout without legs or with more than PAYOUT_LEGS_MAX
    SELF_TRANSFER = 12  # credit and debit on the same account
    SUPPLY_LIMIT = 13  # an issue would push outstanding som beyond 2**63-1 tyiyn
    MEMPOOL_FULL = 14  # the node holds as many pending transactions as it may; retry later
    CATCHING_UP = 15  # the node is behind the network and cannot judge it yet; retry later
    MISADDRESSED = 16  # a sealed remittance not sealed to exactly the banks it must reach
    # Governance (issue 13, node/governance.py).
    GOV_NOT_APPROVED = 17  # fewer distinct valid officer approvals than the threshold
    GOV_NEW_KEY_UNSIGNED = 18  # a key rotation the new key did not sign
    GOV_TOO_FEW_VALIDATORS = 19  # a set of fewer than 4 validators without allow_below_four
    PARTICIPANT_SUSPENDED = 20  # the sender, or the owner of a credited account, is suspended
    ACCOUNT_FROZEN = 21  # a debit of a frozen account (credits are allowed)
    GOV_PARTICIPANT_EXISTS = 22  # admit: the id is already a participant, account or officer
    GOV_KEY_IN_USE = 23  # admit or rotate: the key is (or was) a participant's or officer's
    GOV_UNKNOWN_PARTICIPANT = 24  # the action names no participant
    GOV_NOT_ELIGIBLE = 25  # suspend the issuer; a bank or suspended participant as validator
    GOV_NO_CHANGE = 26  # suspend a suspended participant, freeze a frozen account, ...
    EVIDENCE_INVALID = 27  # a vote of the evidence is not a valid vote of its height's set
    EVIDENCE_NO_CONFLICT = 28  # the votes are not one validator's for one slot, two values
    EVIDENCE_DUPLICATE = 29  # this equivocation (validator, height, round, type) is on chain
    EVIDENCE_TOO_OLD = 30  # the ledger no longer knows the validator set of its height


class TxRefused(NodeError):
    """A transaction refused with a stable code and a human message."""

    def __init__(self, code: RefusalCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class BlockError(NodeError):
    """A block that does not decode or is not valid on top of the current ledger."""


class GenesisError(NodeError):
    """A genesis file that cannot start a network; the message names the field."""
