"""Signed transfer traffic against a running network, with finality latency.

Each bank node's own key signs transfers from its main account to another bank; they are
submitted to that bank's node over HTTP (keep-alive). Finality is observed by following
the chain at one node: each new block's transaction hashes are matched against what was
submitted, so latency is measured from submit to the moment the block is seen final,
without one extra request per transfer. Every transfer carries a remittance, sealed to
its two banks and the issuer like any bank's (node/tx.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from nacl.signing import SigningKey

from cli.api_client import ApiClient, ApiError, Credentials
from cli.entry import NodeEntry
from node.genesis import Genesis
from node.keys import load_key_file
from node.tx import decode_tx, sign_transfer

__all__ = ["Bank", "TrafficStats", "banks_of", "run_traffic"]

EXPIRY_BLOCKS = 5_000
FOLLOW_INTERVAL_S = 0.02
SUBMIT_CONCURRENCY = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Bank:
    bank_id: str
    api_url: str
    key: SigningKey


@dataclass(slots=True, kw_only=True)
class TrafficStats:
    submitted: int = 0
    refused: int = 0
    final: int = 0
    height: int = 0
    latencies_s: list[float] = field(default_factory=list)
    pending: dict[str, float] = field(default_factory=dict)  # tx hash hex -> submit time
    window_start: int = 0  # index into latencies_s where the current report window begins

    def percentile_ms(self, fraction: float, *, window: bool = False) -> float:
        """Latency percentile over the whole run, or over the current window only."""
        latencies = self.latencies_s[self.window_start :] if window else self.latencies_s
        if not latencies:
            return 0.0
        ordered = sorted(latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def banks_of(entries: list[NodeEntry]) -> list[Bank]:
    return [
        Bank(bank_id=e.node_id, api_url=e.api_url, key=load_key_file(e.home / "node_key.json"))
        for e in entries
        if e.role == "bank"
    ]


async def _follow(api: ApiClient, stats: TrafficStats, stop: asyncio.Event) -> None:
    """Watch one bank's node and mark its submitted transactions final as blocks appear
    (a bank sees its own transactions in a block, which are the ones it sent)."""
    height = int((await api.status())["height"])
    while not stop.is_set():
        top = int((await api.status())["height"])
        while height < top:
            height += 1
            block = await api.block(height)
            now = time.monotonic()
            for tx_hash in block["tx_hashes"]:
                submitted_at = stats.pending.pop(tx_hash, None)
                if submitted_at is not None:
                    stats.latencies_s.append(now - submitted_at)
                    stats.final += 1
            stats.height = max(stats.height, height)
        await asyncio.sleep(FOLLOW_INTERVAL_S)


async def _submit(api: ApiClient, tx: bytes, tx_hash: str, stats: TrafficStats) -> None:
    # Registered before the request: the block may be seen before the response arrives.
    stats.pending[tx_hash] = time.monotonic()
    try:
        await api.submit(tx)
    except ApiError:
        # Refused, or the node went away (the demo stopping, a node restarting): no
        # answer, so the transfer's fate is unknown to us; it is counted as refused.
        stats.pending.pop(tx_hash, None)
        stats.refused += 1


def _sign(bank: Bank, to: str, genesis: Genesis, height: int, rng: random.Random) -> bytes:
    return sign_transfer(
        bank.key,
        genesis.chain_id,
        signer=bank.bank_id,
        uetr=uuid.uuid4().bytes,  # never reused across runs: a reused UETR is a DUPLICATE
        expiry_height=height + EXPIRY_BLOCKS,
        from_account=bank.bank_id,
        to_account=to,
        amount=rng.randrange(1, 10_000),
        remittance="somnet traffic",
        recipients=genesis.remittance_keys(bank.bank_id, [to]),
    )


async def run_traffic(
    banks: list[Bank],
    *,
    genesis: Genesis,
    rate_per_s: float,
    duration_s: float | None,
    on_second: Callable[[TrafficStats, float], None],
    seed: int = 0,
) -> TrafficStats:
    """Submit about `rate_per_s` transfers a second until `duration_s` passes (None: until
    cancelled), then wait up to 30 s for the last ones to be final."""
    assert len(banks) >= 2
    assert rate_per_s > 0
    rng = random.Random(seed)
    chain_id = genesis.chain_id
    stats = TrafficStats()
    stop = asyncio.Event()
    limit = asyncio.Semaphore(SUBMIT_CONCURRENCY)
    clients = {
        bank.bank_id: ApiClient(
            bank.api_url, Credentials(bank.bank_id, bank.key), connections_max=SUBMIT_CONCURRENCY
        )
        for bank in banks
    }
    async with contextlib.AsyncExitStack() as stack:
        for client in clients.values():
            await stack.enter_async_context(client)
        height = int((await clients[banks[0].bank_id].status())["height"])
        followers = [asyncio.create_task(_follow(c, stats, stop)) for c in clients.values()]
        tasks: set[asyncio.Task[None]] = set()

        async def submit_one(bank: Bank, tx: bytes) -> None:
            async with limit:
                tx_hash = decode_tx(tx, chain_id).tx_hash.hex()
                await _submit(clients[bank.bank_id], tx, tx_hash, stats)

        started = time.monotonic()
        next_report = started + 1
        try:
            for count in itertools.count():
                now = time.monotonic()
                if duration_s is not None and now - started >= duration_s:
                    break
                due = started + count / rate_per_s
                if due > now:
                    await asyncio.sleep(due - now)
                sender, receiver = rng.sample(banks, 2)
                # Expiry counts from the latest height seen, so long runs stay valid.
                tx = _sign(sender, receiver.bank_id, genesis, max(height, stats.height), rng)
                stats.submitted += 1
                task = asyncio.create_task(submit_one(sender, tx))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                if time.monotonic() >= next_report:
                    on_second(stats, time.monotonic() - started)
                    stats.window_start = len(stats.latencies_s)
                    next_report += 1
            await asyncio.gather(*tasks)
            deadline = time.monotonic() + 30
            while stats.pending and time.monotonic() < deadline:  # noqa: ASYNC110 - set by the follower
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            for follower in followers:
                follower.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
    return stats
