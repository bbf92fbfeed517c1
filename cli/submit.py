"""Signing and submitting a participant's transactions: the one flow behind transfer,
issue, redeem and payout.

Every transaction is signed before the first byte is sent, so a field that does not sign
(node/tx.py raises TxRefused) stops the command with nothing sent. Then it is submitted
(several in one batch request), and with --wait followed until it is final, refused or
expired. A node's answer "pending" already means kept: it survives the node's restart.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from cli.api_client import ApiClient, ApiError
from cli.command import EXIT_REFUSED, CommandFailed
from node.config import load_config
from node.errors import RefusalCode, TxRefused
from node.genesis import Genesis, load_genesis
from node.tx import remittance_recipients

__all__ = [
    "EXPIRY_BLOCKS_DEFAULT",
    "Signer",
    "expiry_height",
    "new_uetr",
    "participant_keys",
    "remittance_keys",
    "submit_all",
    "submit_and_wait",
    "unsettled",
]

Json = dict[str, Any]

EXPIRY_BLOCKS_DEFAULT = 1000
WAIT_MS = 30_000
WAIT_ROUNDS_MAX = 10
"""Long polls one --wait makes for one transaction (5 minutes): a transaction expires at
its expiry height, but a stalled network should not hold the command for ever."""
BATCH_TXS_MAX = 100
"""Transactions in one batch request: well under a node's default api.batch_txs_max."""
BATCH_BYTES_MAX = 2 * 1024 * 1024
"""Transaction bytes in one batch request: half a node's default api.body_bytes_max, so
that the msgpack framing and a node with a smaller limit leave room."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Signer:
    """The participant whose node directory signs, with the chain it signs for."""

    participant_id: str
    key: SigningKey
    genesis: Genesis

    @classmethod
    def of(cls, home: Path, client: ApiClient) -> Signer:
        """The signer of `home`, whose key the client already holds.

        Raises:
            node.config.ConfigError, node.errors.GenesisError: an unusable directory.
        """
        genesis = load_genesis(load_config(home).genesis_file)
        credentials = client.credentials
        return cls(
            participant_id=credentials.participant_id, key=credentials.signing_key, genesis=genesis
        )

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id


async def participant_keys(api: ApiClient) -> dict[str, bytes]:
    """Every participant's key in force now, by id, as the bank's own node's ledger holds
    them (after admissions and rotations), for sealing remittances."""
    keys = {}
    for p in (await api.governance()).get("participants", []):
        try:
            key = bytes.fromhex(p["public_key"])
            participant_id = p["id"]
        except (KeyError, TypeError, ValueError):
            key, participant_id = b"", None
        if not isinstance(participant_id, str) or len(key) != 32:
            message = f"the node's participant list holds a malformed entry: {p!r:.200}"
            raise CommandFailed("BAD_ANSWER", message, exit_code=EXIT_REFUSED)
        keys[participant_id] = key
    return keys


def remittance_keys(
    signer: Signer, keys: dict[str, bytes], credited_accounts: list[str]
) -> dict[str, bytes]:
    """The keys, by participant id, that a remittance of `signer` paying these accounts is
    sealed to (node.tx.remittance_recipients), from `participant_keys`: so a bank admitted
    or a key rotated since genesis gets remittances it can open. An account is owned as
    genesis says, or, for a bank admitted since, it is that bank's own account (its id).

    Raises:
        TxRefused: UNKNOWN_ACCOUNT, naming an account no participant owns.
    """
    banks = []
    for account in credited_accounts:
        owner = signer.genesis.owner_of(account) or (account if account in keys else None)
        if owner is None:
            raise TxRefused(RefusalCode.UNKNOWN_ACCOUNT, f"no account {account!r}")
        banks.append(owner)
    issuer = signer.genesis.issuer.participant_id
    return {r: keys[r] for r in remittance_recipients(signer.participant_id, issuer, banks)}


def new_uetr(text: str | None = None) -> bytes:
    """The UETR given (a UUID), or a fresh one: it names the payment for ever.

    Raises:
        ValueError: `text` is not a UUID.
    """
    if text is None:
        return uuid.uuid4().bytes
    try:
        return uuid.UUID(text).bytes
    except ValueError as exc:
        raise ValueError(f"uetr {text!r}: expected a UUID") from exc


async def expiry_height(api: ApiClient, blocks: int) -> int:
    """The height after which a transaction signed now may no longer settle."""
    return int((await api.status())["height"]) + blocks


async def submit_and_wait(api: ApiClient, tx: bytes, *, wait: bool) -> Json:
    """Submit one transaction; with `wait`, its final answer (else "pending")."""
    result = await api.submit(tx)
    return await _followed(api, result) if wait else result


async def submit_all(api: ApiClient, txs: list[bytes], *, wait: bool) -> list[Json]:
    """Submit transactions in batch requests; one result per transaction, in order:
    {tx_hash, status, ...} or {code, message} for one the node refused at once."""
    results: list[Json] = []
    for batch in _batches(txs):
        answers = await api.submit_batch(batch)
        if len(answers) != len(batch):
            raise ApiError(f"a batch of {len(batch)} got {len(answers)} results")
        results += answers
    if wait:
        results = [await _followed(api, r) if "tx_hash" in r else r for r in results]
    return results


def _batches(txs: list[bytes]) -> list[list[bytes]]:
    batches: list[list[bytes]] = [[]]
    size = 0
    for tx in txs:
        assert len(tx) <= BATCH_BYTES_MAX  # node.tx.TX_SIZE_MAX is far smaller
        if len(batches[-1]) == BATCH_TXS_MAX or size + len(tx) > BATCH_BYTES_MAX:
            batches.append([])
            size = 0
        batches[-1].append(tx)
        size += len(tx)
    assert sum(len(b) for b in batches) == len(txs)
    return [b for b in batches if b]


async def _followed(api: ApiClient, result: Json) -> Json:
    """The answer once the transaction is no longer pending, or after WAIT_ROUNDS_MAX
    long polls (then still pending)."""
    for _ in range(WAIT_ROUNDS_MAX):
        if result.get("status") != "pending":
            break
        result = await api.transaction(str(result["tx_hash"]), wait_ms=WAIT_MS)
    return result


def unsettled(result: Json, *, waited: bool) -> CommandFailed | None:
    """Why the answer is a failure of the command (refused, expired, or still pending
    after --wait), or None when it is final, or pending without --wait."""
    status = result.get("status")
    if status == "final" or (status == "pending" and not waited):
        return None
    if status == "pending":
        seconds = WAIT_ROUNDS_MAX * WAIT_MS // 1000
        message = f"{result['tx_hash']} not final after {seconds} s"
        return CommandFailed("PENDING", message, exit_code=EXIT_REFUSED)
    code = str(result.get("code") or str(status).upper())
    message = str(result.get("message") or f"{result.get('tx_hash')} {status}")
    return CommandFailed(code, message, exit_code=EXIT_REFUSED)
