"""What the bank API reads of the node, and who of the participants may read what of it
(node/api.py's module docstring states the rules; node/events.py streams by them)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nacl.signing import SigningKey

from node.anchor import Anchorer
from node.api_auth import Caller
from node.driver import Driver, Settled
from node.events_wait import wait_event
from node.intake import Intake
from node.store import StoreError
from node.tx import Issue, Payout, Redeem, Transfer, Tx

__all__ = ["ApiContext", "accounts_of", "reads_account", "reads_tx"]


class ApiContext:
    """What the API reads, and the hooks it calls when a transaction is admitted."""

    def __init__(
        self,
        *,
        driver: Driver,
        intake: Intake,
        connected_peers: Callable[[], list[str]],
        on_store_failure: Callable[[StoreError], None],
        remittance_key: SigningKey | None = None,
        anchorer: Anchorer | None = None,
    ) -> None:
        """Args:
        on_store_failure: called when a read finds the store damaged or failing; the
            node must stop with its fatal status rather than answer from it."""
        self.driver = driver
        self.on_store_failure = on_store_failure
        self.intake = intake
        self.connected_peers = connected_peers
        self.remittance_key = remittance_key  # opens remittances sealed to this node
        self.anchorer = anchorer  # None unless this node anchors
        self.closing = False  # the node stops: long polls answer, streams end
        self._settled = asyncio.Event()
        driver.on_settled.append(self._notify)

    def _notify(self, settled: Settled) -> None:
        # Wake every waiter; each re-reads its own transaction's status.
        if self.closing:
            return
        self._settled.set()
        self._settled = asyncio.Event()

    def close(self) -> None:
        """The node stops: wake every waiter, and every later wait returns at once."""
        self.closing = True
        self._settled.set()  # never replaced again (_notify)

    async def settled_once(self, timeout_s: float) -> None:
        """Return when a block settles, the node stops (`closing`), or after timeout_s."""
        await wait_event(self._settled, timeout_s)


def reads_account(context: ApiContext, caller: Caller, account: str) -> bool:
    owner = context.driver.ledger.owner_of(account)  # genesis's accounts and admitted ones
    return caller.reads_all or owner == caller.participant_id


def accounts_of(tx: Tx) -> list[str]:
    """The accounts a transaction debits or credits (none for governance and evidence)."""
    if type(tx) is Transfer:
        return [tx.from_account, tx.to_account]
    if type(tx) is Payout:
        return [tx.from_account, *(to for to, _ in tx.legs)]
    if type(tx) is Issue:
        return [tx.to_account]
    if type(tx) is Redeem:
        return [tx.from_account]
    return []


def reads_tx(context: ApiContext, caller: Caller, tx: Tx) -> bool:
    if caller.reads_all or tx.signer == caller.participant_id:
        return True
    return any(reads_account(context, caller, account) for account in accounts_of(tx))
