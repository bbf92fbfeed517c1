"""Open-loop load against a network's batch route, with honest finality counting.

Shared by `somnet load` (a running network), `somnet bench network`, `somnet bench payout`
and `somnet demo`. Why it is shaped this way (issue 12, "What is wrong with the figures"):

- The client must not be the limit. Load comes from separate worker processes
  (cli/load_worker.py), one or more per bank, that pre-sign their transactions before the
  timed window and send them through POST /v1/transactions/batch: many transfers per
  signed request, kept in one LMDB write by the node.
- Open loop, no coordinated omission. Each batch has a due time (start + k x interval);
  a worker sends it at that time without waiting for earlier answers, and each
  transaction's latency is measured from its batch's due time, not from when the request
  left. A client that falls behind shows up as latency, as wrk2 measures it.
- Finality is seen, not assumed: this process follows every bank node's event stream
  (GET /v1/events, as that bank) and stamps each of our transactions when the block that
  holds it arrives. CLOCK_MONOTONIC is one clock for all processes of the machine, so the
  workers' due times and these stamps compare.
- Counting: finalized per second counts only transactions whose finality stamp falls in
  the measured window (after the warm-up, before the end of sending), divided by the
  window's length; transactions that become final in the drain after it are never
  counted in the rate. Latency percentiles are over the transactions due in the window,
  and those never final by the end of the drain are reported as not final.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import multiprocessing.synchronize
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from cli.api_client import ApiClient, ApiError, Credentials
from cli.command import number_in
from cli.entry import NodeEntry
from cli.load_worker import WorkerSpec, run_worker
from node.keys import load_key_file

__all__ = [
    "Bank",
    "LoadOptions",
    "LoadResult",
    "Progress",
    "Tally",
    "add_rate_option",
    "add_window_options",
    "banks_of",
    "percentile",
    "run_load",
]

RATE_MAX = 1_000_000.0  # transfers per second a load run may be asked for
SECONDS_MAX = 86_400.0  # of a warm-up, window or drain
CLIENTS_MAX = 64  # load processes per bank
BATCH_INTERVAL_S = 0.02
DRAIN_S_DEFAULT = 30.0
START_LEAD_S = 0.5  # time for every worker to see the start before the first batch is due
FOREIGN_FINAL_S_MAX = 60.0  # a final transaction no worker claimed by then is not ours


@dataclass(frozen=True, slots=True, kw_only=True)
class Bank:
    bank_id: str
    api_url: str
    key: SigningKey


def banks_of(entries: list[NodeEntry]) -> list[Bank]:
    return [
        Bank(bank_id=e.node_id, api_url=e.api_url, key=load_key_file(e.home / "node_key.json"))
        for e in entries
        if e.role == "bank"
    ]


def add_rate_option(options: argparse._ActionsContainer, *, rate_per_s: float) -> None:
    """--rate, for `somnet load` and `somnet bench network` (where --max may replace it, so
    `options` may be a group of alternatives)."""
    options.add_argument(
        "--rate", type=number_in(0.1, RATE_MAX), default=rate_per_s,
        help=f"transfers per second ({rate_per_s:g})",
    )  # fmt: skip


def add_window_options(
    parser: argparse.ArgumentParser, *, duration_s: float, warmup_s: float
) -> None:
    """--duration, --warmup, --drain and --clients: the open-loop run that `somnet load`
    and `somnet bench network` share, each with its own window."""
    parser.add_argument(
        "--duration", type=number_in(0.1, SECONDS_MAX), default=duration_s,
        help=f"measured seconds ({duration_s:g})",
    )  # fmt: skip
    parser.add_argument(
        "--warmup", type=number_in(0, SECONDS_MAX), default=warmup_s,
        help=f"seconds before them ({warmup_s:g})",
    )  # fmt: skip
    parser.add_argument(
        "--drain", type=number_in(0, SECONDS_MAX), default=DRAIN_S_DEFAULT,
        help=f"seconds to wait after ({DRAIN_S_DEFAULT:g})",
    )  # fmt: skip
    parser.add_argument(
        "--clients", type=number_in(1, CLIENTS_MAX, integer=True), default=1,
        help="load processes per bank (1)",
    )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadOptions:
    """What to send. `rate_per_s` counts transactions (a payout is one, whatever its legs);
    None sends every batch at once (a payout run). `duration_s` None: until `stop` is set,
    signing each batch just before it is sent (the demo; its rate is low)."""

    genesis_path: Path
    rate_per_s: float | None
    warmup_s: float = 0.0
    duration_s: float | None
    targets: tuple[str, ...]  # credited accounts, chosen at random
    clients_per_bank: int = 1
    batch_interval_s: float = BATCH_INTERVAL_S
    drain_s: float = DRAIN_S_DEFAULT
    remittance: str = ""
    payout_legs: int = 0  # 0: transfers; else every transaction is a payout of this many legs
    payout_count: int = 0  # payouts in all (a payout run), shared by the banks
    seed: int = 0

    def __post_init__(self) -> None:
        assert self.rate_per_s is None or self.rate_per_s > 0
        assert self.duration_s is None or self.duration_s > 0
        assert self.warmup_s >= 0
        assert self.targets
        if self.payout_legs:
            assert self.payout_count >= 1
        else:
            assert self.rate_per_s is not None


@dataclass(slots=True)
class Tally:
    """Our transactions, joined as the two halves arrive in either order: a worker's
    report (hash and due time, or a refusal) and the follower's finality stamp."""

    due_by_hash: dict[str, tuple[float, int]] = field(default_factory=dict)  # -> (due, legs)
    final_unclaimed: dict[str, tuple[float, str | None]] = field(default_factory=dict)
    finalized: list[tuple[float, float, int]] = field(default_factory=list)  # due, final, legs
    refused: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)  # sent again after a 503 or 429
    submitted: int = 0
    due_first: float | None = None
    due_last: float | None = None

    def on_accepted(self, tx_hash: str, due: float, legs: int) -> None:
        self.submitted += 1
        self.due_first = due if self.due_first is None else min(self.due_first, due)
        self.due_last = due if self.due_last is None else max(self.due_last, due)
        stamp = self.final_unclaimed.pop(tx_hash, None)
        if stamp is None:
            self.due_by_hash[tx_hash] = (due, legs)
        else:
            self._final(due, stamp, legs)

    def on_refused(self, code: str, count: int = 1) -> None:
        self.submitted += count
        self.refused[code] += count

    def on_final(self, tx_hash: str, at: float, refusal: str | None) -> None:
        claimed = self.due_by_hash.pop(tx_hash, None)
        if claimed is None:
            # Every bank's stream reports each block: the first sighting is when it was final.
            self.final_unclaimed.setdefault(tx_hash, (at, refusal))
        else:
            self._final(claimed[0], (at, refusal), claimed[1])

    def _final(self, due: float, stamp: tuple[float, str | None], legs: int) -> None:
        at, refusal = stamp
        if refusal is None:
            self.finalized.append((due, at, legs))
        else:  # settled in a block as refused (a balance, a rule): not a finalized transfer
            self.refused[refusal] += 1

    def forget_foreign(self, now: float) -> None:
        """Drop finality stamps that no worker claimed for long: others' transactions."""
        old = [h for h, (at, _) in self.final_unclaimed.items() if now - at > FOREIGN_FINAL_S_MAX]
        for tx_hash in old:
            del self.final_unclaimed[tx_hash]

    @property
    def pending(self) -> int:
        return len(self.due_by_hash)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (0 of nothing)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """One second of a run, for the progress line and the plot."""

    elapsed_s: float
    height: int
    submitted: int
    final: int
    final_last_second: int
    refused: int
    pending: int
    latency_ms_p50_last_second: float
    latency_ms_p99_last_second: float

    def line(self) -> str:
        return (
            f"t={self.elapsed_s:5.0f}s height={self.height:6d} submitted={self.submitted:8d}"
            f" final={self.final:8d} (+{self.final_last_second:6d}/s) refused={self.refused:5d}"
            f" pending={self.pending:7d} last second: p50={self.latency_ms_p50_last_second:7.1f}ms"
            f" p99={self.latency_ms_p99_last_second:7.1f}ms"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockSeen:
    height: int
    at: float  # when the follower received it (monotonic)
    tx_count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    """A run's raw record; `window_figures` turns it into the reported figures."""

    start: float  # monotonic time of the first due batch
    window_start: float  # start + warm-up
    window_end: float  # the end of sending (None duration: when stopped)
    drained_at: float
    tally: Tally
    blocks: tuple[BlockSeen, ...]
    seconds: tuple[Progress, ...]
    sign_seconds: float
    client_cpu_s: float  # the worker processes' CPU time
    counter_cpu_s: float  # this process's (following the event streams, counting)

    def window_figures(self) -> dict[str, Any]:
        """Finalized per second inside the window only; latency of what was due in it."""
        t = self.tally
        window_s = self.window_end - self.window_start
        assert window_s > 0
        in_window = [f for f in t.finalized if self.window_start <= f[1] < self.window_end]
        due_in_window = [f for f in t.finalized if self.window_start <= f[0] < self.window_end]
        latencies_ms = [1000 * (final - due) for due, final, _ in due_in_window]
        not_final = t.pending
        return {
            "window_s": round(window_s, 3),
            "submitted": t.submitted,
            "final": len(t.finalized),
            "final_in_window": len(in_window),
            "finalized_tx_per_s": round(len(in_window) / window_s, 1),
            "finalized_legs_per_s": round(sum(f[2] for f in in_window) / window_s, 1),
            "latency_ms_p50": round(percentile(latencies_ms, 0.50), 1),
            "latency_ms_p90": round(percentile(latencies_ms, 0.90), 1),
            "latency_ms_p99": round(percentile(latencies_ms, 0.99), 1),
            "latency_ms_max": round(max(latencies_ms, default=0.0), 1),
            "refused": sum(t.refused.values()),
            "refused_by_code": dict(sorted(t.refused.items())),
            "retried_by_code": dict(sorted(t.retried.items())),
            "not_final": not_final,
            "client_cpu_s": round(self.client_cpu_s, 2),
            "counter_cpu_s": round(self.counter_cpu_s, 2),
            "sign_seconds": round(self.sign_seconds, 2),
        }


async def _follow(
    bank: Bank,
    from_height: int,
    on_block: Callable[[dict[str, Any], float], None],
    stop: asyncio.Event,
) -> None:
    """Stamp our transactions final as the bank's node streams its blocks; resume after a
    broken stream from the next height."""
    height = from_height
    async with ApiClient(bank.api_url, Credentials(bank.bank_id, bank.key)) as api:
        while not stop.is_set():
            try:
                async for event in api.events(from_height=height):
                    on_block(event, time.monotonic())
                    height = int(event["height"]) + 1
            except ApiError:
                await asyncio.sleep(0.2)


def _pump(
    messages: multiprocessing.Queue[Any],
    loop: asyncio.AbstractEventLoop,
    handle: Callable[[Any], None],
    workers: int,
    closing: threading.Event,
) -> None:
    """Hand the workers' messages to the event loop, until every worker said done (or
    the run is over without them: a worker killed)."""
    done = 0
    while done < workers and not closing.is_set():
        try:
            message = messages.get(timeout=0.2)
        except queue.Empty:
            continue
        if message[0] == "done":
            done += 1
        with contextlib.suppress(RuntimeError):  # the loop closed: the run is over
            loop.call_soon_threadsafe(handle, message)


async def run_load(
    banks: list[Bank],
    options: LoadOptions,
    *,
    on_second: Callable[[Progress], None],
    stop: threading.Event | None = None,
) -> LoadResult:
    """Pre-sign in the workers, start them together, count finality, drain, return."""
    assert banks
    loop = asyncio.get_running_loop()
    async with ApiClient(banks[0].api_url, Credentials(banks[0].bank_id, banks[0].key)) as api:
        height = int((await api.status())["height"])
    # Fork while this process has one thread (loopback URLs are IP addresses, which aiohttp
    # connects to without its resolver thread), before the followers and the pump start:
    # the child then runs only run_worker, on a fresh event loop (asyncio keys the running
    # loop by pid). Spawn would import the whole CLI again in every worker, 2 s or more
    # on a busy machine; it is the fallback when another thread exists.
    context: multiprocessing.context.ForkContext | multiprocessing.context.SpawnContext
    if threading.active_count() == 1:
        context = multiprocessing.get_context("fork")
    else:
        context = multiprocessing.get_context("spawn")
    messages: multiprocessing.Queue[Any] = context.Queue()
    start_at = context.Value("d", 0.0)
    go = context.Event()
    halt = context.Event()
    tally = Tally()
    blocks: list[BlockSeen] = []
    height_seen = [0]
    specs = _specs(banks, options, height)
    processes = [
        context.Process(
            target=run_worker,
            args=(spec, messages, go, halt, start_at),
            name=f"somnet-load-{spec.index}",
            daemon=True,
        )
        for spec in specs
    ]
    signed = [0]
    workers_cpu = [0.0]
    workers_done = [0]

    def on_block(event: dict[str, Any], at: float) -> None:
        if int(event["height"]) > height_seen[0]:
            height_seen[0] = int(event["height"])
            blocks.append(BlockSeen(height=height_seen[0], at=at, tx_count=int(event["tx_count"])))
        for tx in event["transactions"]:
            refusal = None if tx["status"] == "final" else str(tx.get("code", tx["status"]))
            tally.on_final(str(tx["tx_hash"]), at, refusal)

    def on_message(message: Any) -> None:
        kind = message[0]
        if kind == "signed":
            signed[0] += 1
        elif kind == "batch":
            _, due, results, legs = message
            for tx_hash, code in results:
                if code is None:
                    tally.on_accepted(tx_hash, due, legs)
                else:
                    tally.on_refused(code)
        elif kind == "retried":
            tally.retried.update(message[1])
        else:
            assert kind == "done"
            workers_cpu[0] += message[2]
            workers_done[0] += 1

    for process in processes:
        process.start()
    follow_stop = asyncio.Event()
    followers = [
        asyncio.create_task(_follow(bank, height + 1, on_block, follow_stop)) for bank in banks
    ]
    closing = threading.Event()
    pump = threading.Thread(
        target=_pump, args=(messages, loop, on_message, len(processes), closing), daemon=True
    )
    pump.start()
    seconds: list[Progress] = []
    try:
        counter_cpu_started = time.process_time()
        signing_started = time.monotonic()
        while signed[0] < len(processes):
            _check_alive(processes)
            await asyncio.sleep(0.05)
        sign_seconds = time.monotonic() - signing_started
        start = time.monotonic() + START_LEAD_S
        start_at.value = start
        go.set()
        sending_s = None if options.duration_s is None else options.warmup_s + options.duration_s
        end = None if sending_s is None else start + sending_s
        next_second = start + 1
        final_seen = 0
        while True:
            now = time.monotonic()
            if end is not None and now >= end:
                break
            if end is None and stop is not None and stop.is_set():
                end = now
                break
            _check_alive(processes)
            if now >= next_second:
                progress = _progress(tally, next_second - start, height_seen[0], final_seen)
                final_seen = len(tally.finalized)
                seconds.append(progress)
                on_second(progress)
                tally.forget_foreign(now)
                next_second += 1
            await asyncio.sleep(min(0.05, max(0.0, next_second - time.monotonic())))
        halt.set()
        drain_end = end + options.drain_s
        while time.monotonic() < drain_end:
            if workers_done[0] == len(processes) and tally.pending == 0:
                break
            if time.monotonic() >= next_second:
                progress = _progress(tally, next_second - start, height_seen[0], final_seen)
                final_seen = len(tally.finalized)
                seconds.append(progress)
                on_second(progress)
                next_second += 1
            await asyncio.sleep(0.05)
        drained_at = time.monotonic()
        counter_cpu_s = time.process_time() - counter_cpu_started
    finally:
        halt.set()
        go.set()  # a worker still signing is told to stop at once
        follow_stop.set()
        for follower in followers:
            follower.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        for process in processes:
            await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                process.kill()
        await asyncio.to_thread(pump.join, 2)
        closing.set()
        with contextlib.suppress(Exception):
            messages.close()
    return LoadResult(
        start=start,
        window_start=start + options.warmup_s,
        window_end=end,
        drained_at=drained_at,
        tally=tally,
        blocks=tuple(blocks),
        seconds=tuple(seconds),
        sign_seconds=sign_seconds,
        client_cpu_s=workers_cpu[0],
        counter_cpu_s=counter_cpu_s,
    )


def _check_alive(processes: Sequence[multiprocessing.process.BaseProcess]) -> None:
    for process in processes:
        if process.exitcode not in (None, 0):
            raise RuntimeError(f"load worker {process.name} exited with {process.exitcode}")


def _progress(tally: Tally, elapsed_s: float, height: int, final_before: int) -> Progress:
    last = tally.finalized[final_before:]
    latencies_ms = [1000 * (final - due) for due, final, _ in last]
    return Progress(
        elapsed_s=elapsed_s,
        height=height,
        submitted=tally.submitted,
        final=len(tally.finalized),
        final_last_second=len(last),
        refused=sum(tally.refused.values()),
        pending=tally.pending,
        latency_ms_p50_last_second=percentile(latencies_ms, 0.5),
        latency_ms_p99_last_second=percentile(latencies_ms, 0.99),
    )


def _specs(banks: list[Bank], options: LoadOptions, height: int) -> list[WorkerSpec]:
    """One worker per bank and client; the rate (and a payout run's payouts) shared out."""
    workers = [(bank, c) for bank in banks for c in range(options.clients_per_bank)]
    count = len(workers)
    specs = []
    for index, (bank, _) in enumerate(workers):
        payouts = options.payout_count // count + (index < options.payout_count % count)
        specs.append(
            WorkerSpec(
                index=index,
                bank_id=bank.bank_id,
                key_seed=bytes(bank.key),
                api_url=bank.api_url,
                genesis_path=str(options.genesis_path),
                rate_per_s=None if options.rate_per_s is None else options.rate_per_s / count,
                seconds=None
                if options.duration_s is None
                else options.warmup_s + options.duration_s,
                batch_interval_s=options.batch_interval_s,
                targets=options.targets,
                expiry_height=height + EXPIRY_AHEAD_HEIGHTS,
                remittance=options.remittance,
                payout_legs=options.payout_legs,
                payout_count=payouts,
                seed=options.seed * 1000 + index,
            )
        )
    return specs


EXPIRY_AHEAD_HEIGHTS = 9_000  # node.ledger.EXPIRY_HEIGHTS_MAX is 10,000
