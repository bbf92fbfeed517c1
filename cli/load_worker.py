"""One load process of cli/traffic.py: pre-sign, then send batches at their due times.

It runs in a process of its own (multiprocessing: forked, see cli/traffic.py), so
signing and HTTP work never share a core's time slice with the process that counts
finality, and several of them spread over the machine's cores. It talks to its parent
through one queue of tuples:

    ("signed", index, count)          pre-signing is over; waiting for the start
    ("batch", due, [(hash, None) | (None, code)], legs)   one batch's answer, per item
    ("retried", {code: count})        items the node asked to send again later (503, 429)
    ("done", index, cpu_seconds)      the last answer is in

The start time (`start_at`, CLOCK_MONOTONIC, one clock for the whole machine) comes from
the parent; batch k is due at start + k x interval and is sent then whether or not
earlier batches were answered (open loop). With `seconds` None it runs until `halt`,
signing each batch just before it is due (the demo's endless low-rate traffic).
"""

from __future__ import annotations

import asyncio
import multiprocessing.sharedctypes
import multiprocessing.synchronize
import random
import secrets
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from nacl.signing import SigningKey

from cli.api_client import ApiClient, ApiError, Credentials
from node.genesis import Genesis, load_genesis
from node.tx import PAYOUT_LEGS_MAX, sign_payout, sign_transfer

__all__ = ["WorkerSpec", "run_worker"]

AMOUNT_MAX_TYIYN = 10_000
CONNECTIONS_MAX = 64
BATCH_BYTES_MAX = 3 * 1024 * 1024  # under the node's api.body_bytes_max (4 MiB)
BATCH_TXS_MAX = 1_000  # the node's api.batch_txs_max default
# Answers that mean "not now" (503 and 429), and no answer at all (a connection refused
# or reset by an overloaded node): the batch's items are sent again. Safe, because the
# node answers the same bytes sent twice with their first result, never a second copy.
RETRIED = frozenset(
    {"CATCHING_UP", "MEMPOOL_FULL", "TOO_MANY_CONNECTIONS", "RATE_LIMITED", "UNREACHABLE"}
)
RETRY_PAUSE_S = 0.05
RETRY_S_MAX = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSpec:
    index: int
    bank_id: str
    key_seed: bytes
    api_url: str
    genesis_path: str
    rate_per_s: float | None  # transactions per second; None: every batch due at once
    seconds: float | None  # None: until halted
    batch_interval_s: float
    targets: tuple[str, ...]
    expiry_height: int
    remittance: str
    payout_legs: int  # 0: transfers
    payout_count: int
    seed: int

    def __post_init__(self) -> None:
        assert 0 <= self.payout_legs <= PAYOUT_LEGS_MAX
        assert self.targets
        assert self.batch_interval_s > 0


class _Sender(TypedDict):
    """The fields every transaction of one worker shares, whatever its kind."""

    signer: str
    expiry_height: int
    from_account: str


class _Signer:
    """Signs this worker's transactions: from the bank's main account to random targets."""

    def __init__(self, spec: WorkerSpec, genesis: Genesis) -> None:
        self.spec = spec
        self.key = SigningKey(spec.key_seed)
        self.genesis = genesis
        self.rng = random.Random(spec.seed)
        self.targets = [t for t in spec.targets if t != spec.bank_id]
        assert self.targets, "no account to credit but the sender's own"
        self.sender = _Sender(
            signer=spec.bank_id, expiry_height=spec.expiry_height, from_account=spec.bank_id
        )

    def one(self) -> bytes:
        spec, rng, chain_id = self.spec, self.rng, self.genesis.chain_id
        uetr = secrets.token_bytes(16)  # never reused across runs: a reused UETR is DUPLICATE
        if spec.payout_legs:
            legs = [
                (rng.choice(self.targets), rng.randint(1, 100)) for _ in range(spec.payout_legs)
            ]
            return sign_payout(self.key, chain_id, uetr=uetr, legs=legs, **self.sender)
        to = rng.choice(self.targets)
        recipients = self.genesis.remittance_keys(spec.bank_id, [to]) if spec.remittance else None
        amount = rng.randint(1, AMOUNT_MAX_TYIYN)
        return sign_transfer(
            self.key, chain_id, uetr=uetr, to_account=to, amount=amount,
            remittance=spec.remittance, recipients=recipients, **self.sender,
        )  # fmt: skip


def _batch_sizes(spec: WorkerSpec) -> Iterator[int]:
    """How many transactions each batch holds, so that batch k's cumulative count
    follows the rate exactly (no drift from rounding)."""
    if spec.payout_legs:
        per_batch = max(1, min(BATCH_TXS_MAX, BATCH_BYTES_MAX // (40 * spec.payout_legs)))
        left = spec.payout_count
        while left > 0:
            yield min(per_batch, left)
            left -= min(per_batch, left)
        return
    assert spec.rate_per_s is not None
    sent = 0
    k = 0
    while spec.seconds is None or k * spec.batch_interval_s < spec.seconds:
        k += 1
        due_total = round(k * spec.batch_interval_s * spec.rate_per_s)
        yield due_total - sent
        sent = due_total


def _due_offset(spec: WorkerSpec, k: int) -> float:
    """Batch k's due time after the start: at once when there is no rate (a payout)."""
    return 0.0 if spec.rate_per_s is None else k * spec.batch_interval_s


async def _send(api: ApiClient, batch: list[bytes], due: float, legs: int, messages: Any) -> None:
    """Send one batch; what the node asks to retry later (503: catching up, mempool full;
    429) or leaves unanswered is sent again after a pause, for up to RETRY_S_MAX after
    the due time, as a bank's client would. Latency still counts from the first due
    time, so retries show."""
    items: list[tuple[str, str | None]] = []
    while batch:
        try:
            results = [_result(r) for r in await api.submit_batch(batch)]
        except ApiError as exc:
            results = [("", exc.code)] * len(batch)
        again = [tx for tx, (_, code) in zip(batch, results, strict=True) if code in RETRIED]
        if not again or time.monotonic() - due > RETRY_S_MAX:
            items += results
            break
        items += [r for r in results if r[1] not in RETRIED]
        retried = Counter(code for _, code in results if code in RETRIED)
        messages.put(("retried", dict(retried)))
        batch = again
        await asyncio.sleep(RETRY_PAUSE_S)
    messages.put(("batch", due, items, legs))


def _result(result: dict[str, Any]) -> tuple[str, str | None]:
    """(tx hash, None) for a transaction kept, ("", code) for one refused."""
    if "code" in result:
        return "", str(result["code"])
    return str(result["tx_hash"]), None


async def _drive(
    spec: WorkerSpec,
    signer: _Signer,
    batches: list[list[bytes]] | None,
    messages: Any,
    halt: multiprocessing.synchronize.Event,
    start: float,
) -> None:
    legs = max(1, spec.payout_legs)
    credentials = Credentials(spec.bank_id, signer.key)
    tasks: set[asyncio.Task[None]] = set()
    async with ApiClient(spec.api_url, credentials, connections_max=CONNECTIONS_MAX) as api:
        sizes = (
            iter(batches)
            if batches is not None
            else ([signer.one() for _ in range(size)] for size in _batch_sizes(spec))
        )
        for k, batch in enumerate(sizes):
            if batches is None and halt.is_set():  # endless: until halted
                break
            due = start + _due_offset(spec, k)
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not batch:
                continue
            task = asyncio.create_task(_send(api, batch, due, legs, messages))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)


def run_worker(
    spec: WorkerSpec,
    messages: Any,
    go: multiprocessing.synchronize.Event,
    halt: multiprocessing.synchronize.Event,
    start_at: multiprocessing.sharedctypes.Synchronized[float],
) -> None:
    """The process's entry point. Ctrl-C is the parent's to handle: it halts us."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    genesis = load_genesis(Path(spec.genesis_path))
    signer = _Signer(spec, genesis)
    batches = None
    if spec.seconds is not None or spec.payout_legs:
        batches = [[signer.one() for _ in range(size)] for size in _batch_sizes(spec)]
    messages.put(("signed", spec.index, sum(len(b) for b in batches or [])))
    go.wait()
    if not halt.is_set():
        asyncio.run(_drive(spec, signer, batches, messages, halt, start_at.value))
    messages.put(("done", spec.index, time.process_time()))
