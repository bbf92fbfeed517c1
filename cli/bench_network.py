"""`somnet bench network` and `somnet bench payout`: a real network under open-loop load.

Both start a fresh network of real node processes on 127.0.0.1 in a temporary directory
(or drive a running one with --home), measure the machine's ceiling in the same run, send
pre-signed transactions from separate load processes through the batch route
(cli/traffic.py: open loop, latency from each batch's due time, finality seen on the
bank nodes' event streams) and report:

- finalized transfers per second inside the window after the warm-up (never the drain),
  submit-to-final latency p50/p90/p99/max of the transfers due in the window, refused
  by code, transfers not final at the end of the drain;
- blocks and transactions per block in the window, rounds per height (1 = decided in
  the first round), from the blocks' commit certificates;
- CPU seconds (in the window and in all) and peak RSS (VmHWM) of every node process,
  read from /proc, and CPU seconds per finalized transfer;
- the ceiling: raw libsodium verifies per CPU second x the cores this process may use /
  the signature checks each transfer costs across the network (every node checks each
  transfer's signature once, so: the number of nodes). The ratio to it says how much of
  the machine the signature checks, the one cost no design removes, leave to the rest.

Progress lines go to stderr; the summary table to stdout, and with --json stdout ends
with one JSON line. Exit 0 when the run is clean (nothing refused, nothing left
unfinalized), 1 otherwise, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import multiprocessing.synchronize
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from cli.api_client import ApiClient, ApiError, Credentials
from cli.command import number_in
from cli.devnet import init_network, load_network, start_nodes, stop_nodes, wait_ready
from cli.entry import NodeEntry
from cli.ports import free_port_range
from cli.traffic import (
    SECONDS_MAX,
    Bank,
    LoadOptions,
    LoadResult,
    Progress,
    add_rate_option,
    add_window_options,
    banks_of,
    run_load,
)
from node.bench import raw_verifies_per_second
from node.genesis import load_genesis
from node.tx import PAYOUT_LEGS_MAX

__all__ = ["add_network_arguments", "add_payout_arguments", "resources_of"]

EXIT_OK = 0
EXIT_UNCLEAN = 1
EXIT_USAGE = 2
ACCOUNTS_DEFAULT = 1_000
ACCOUNTS_MAX = 2_000_000  # node.genesis.ACCOUNTS_MAX
VALIDATORS_MAX = 100  # consensus.config.VALIDATORS_MAX
BANKS_MAX = 100
LEGS_MAX = 10_000_000
RAW_VERIFY_SAMPLES = 10_000  # about 0.6-0.9 s of one core
P99_MS_MAX = 1_000.0  # --max: the highest rate whose p99 stays under this
MAX_START_RATE = 250.0
# A trial long enough to see past a block or two of bad luck: 4-s trials passed 1,438/s
# whose 60-s run then had a p99 of 2 s (block times vary over seconds, not blocks).
MAX_TRIAL_WARMUP_S = 2.0
MAX_TRIAL_DURATION_S = 10.0
MAX_BISECTIONS = 4
TRIAL_DRAIN_S = 10.0
DOWN_SETTLE_S = 10.0
DOWN_SETTLE_RATE = 100.0
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
BLOCK_FETCH_CONCURRENCY = 16
RATE_LIMITED_TRIES = 30
# The node settings of a benchmark network: a block as soon as there are transfers;
# the rest as `somnet init` writes them (cli/devnet.py node_toml).
BENCH_NODE_ENV = {"SOMNET_NODE_LOG_LEVEL": "WARNING"}


# -- node processes -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    cpu_s: float
    peak_rss_bytes: int


def resources_of(pid: int) -> Resources | None:
    """A process's CPU seconds so far (user + system, /proc/PID/stat) and peak resident
    size (VmHWM, /proc/PID/status); None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command, which may hold spaces
    cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S  # utime, stime
    peak_kb = next(
        (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0
    )
    return Resources(cpu_s=cpu_s, peak_rss_bytes=peak_kb * 1024)


def node_pids(entries: list[NodeEntry]) -> dict[str, int]:
    """The running node processes of a network directory, by their `--home` argument."""
    homes = {str(e.home.resolve()): e.node_id for e in entries}
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv]
        if "run" in words and "--home" in words:
            index = words.index("--home") + 1
            if index < len(words):
                home = str(Path(words[index]).resolve())
                if home in homes:
                    found[homes[home]] = int(proc.name)
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Network:
    directory: Path
    entries: list[NodeEntry]
    pids: dict[str, int]


@contextlib.contextmanager
def network_for(args: argparse.Namespace, progress: Any) -> Iterator[Network]:
    """The running network at --home, or a fresh one in a temporary directory, stopped
    and removed at the end."""
    if args.home:
        directory = Path(args.home)
        entries = load_network(directory)
        yield Network(directory=directory, entries=entries, pids=node_pids(entries))
        return
    with tempfile.TemporaryDirectory(prefix="somnet-bench-network-") as temporary:
        directory = Path(temporary) / "net"
        entries = init_network(
            directory,
            validators=args.validators,
            banks=args.banks,
            chain_id="som-bench",
            host="127.0.0.1",
            base_port=args.base_port or free_port_range(2 * (args.validators + args.banks)),
            accounts=args.accounts,
        )
        progress(
            f"starting {args.validators} validators and {args.banks} banks"
            f" ({args.accounts} accounts) in {directory}"
        )
        env = {e.node_id: BENCH_NODE_ENV for e in entries}
        children = start_nodes(entries, env)
        try:
            if not wait_ready(entries, children):
                raise RuntimeError(f"the network did not become ready; logs in {directory}")
            _wait_banks_caught_up(entries)
            down = _validators_to_stop(entries, getattr(args, "down", 0))
            for node_id in down:
                children[node_id].kill()  # down as a crash is: no goodbye to its peers
                children[node_id].wait()
                progress(f"{node_id} stopped (SIGKILL): it stays down for the whole run")
            yield Network(
                directory=directory,
                entries=entries,
                pids={n: child.pid for n, child in children.items() if n not in down},
            )
        finally:
            stop_nodes(children)


def _validators_to_stop(entries: list[NodeEntry], down: int) -> list[str]:
    """The last `down` validators (never the central bank's), once the network is ready."""
    validators = [e.node_id for e in entries if e.role == "validator"]
    return validators[len(validators) - down :] if down else []


def _wait_banks_caught_up(entries: list[NodeEntry]) -> None:
    """A bank node answers CATCHING_UP until it has heard the validators' height."""

    async def caught_up(bank: Bank) -> bool:
        async with ApiClient(bank.api_url, Credentials(bank.bank_id, bank.key)) as api:
            return bool((await api.status())["caught_up"])

    deadline = time.monotonic() + 60
    for bank in banks_of(entries):
        while not asyncio.run(caught_up(bank)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{bank.bank_id} did not catch up")
            time.sleep(0.1)


# -- the ceiling ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Ceiling:
    raw_verify_per_cpu_second: float  # per core, every core verifying at once
    raw_verify_per_cpu_second_one_core: float  # one core verifying, the others idle
    cores: int
    checks_per_transfer: int

    @property
    def tx_per_s(self) -> float:
        return self.raw_verify_per_cpu_second * self.cores / self.checks_per_transfer


def _verify_rate(
    samples: list[tuple[bytes, bytes]],
    start: multiprocessing.synchronize.Barrier,
    rates: multiprocessing.Queue[float],
) -> None:
    start.wait()
    rates.put(raw_verifies_per_second(samples)[1])


def _verify_rates_at_once(samples: list[tuple[bytes, bytes]], processes: int) -> list[float]:
    """Per-CPU-second verify rates of `processes` processes verifying at the same time."""
    context = multiprocessing.get_context("fork")
    start = context.Barrier(processes)
    rates: multiprocessing.Queue[float] = context.Queue()
    workers = [
        context.Process(target=_verify_rate, args=(samples, start, rates), daemon=True)
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    measured = [rates.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join()
    return measured


def measure_ceiling(nodes: int) -> Ceiling:
    """Raw libsodium verifies per CPU second on signatures like a transfer's, measured
    now with every usable core verifying at once, x the cores / the nodes (each checks
    every transfer once). All cores at once, because a loaded network keeps them all
    busy, and virtual cores that share a physical one each verify far slower then (on
    this machine's KVM guest about 11,700/s each against 18,100/s for one alone); the
    one-core figure is reported beside it."""
    key = SigningKey.generate()
    public_key = bytes(key.verify_key)
    samples = [(bytes(key.sign(os.urandom(140))), public_key) for _ in range(RAW_VERIFY_SAMPLES)]
    cores = len(os.sched_getaffinity(0))
    _, one_core = raw_verifies_per_second(samples)
    at_once = _verify_rates_at_once(samples, cores)
    return Ceiling(
        raw_verify_per_cpu_second=sum(at_once) / cores,
        raw_verify_per_cpu_second_one_core=one_core,
        cores=cores,
        checks_per_transfer=nodes,
    )


# -- one run ---------------------------------------------------------------------------


def _targets(directory: Path) -> tuple[str, ...]:
    """The accounts to credit: the customers' accounts, else every account."""
    genesis = load_genesis(directory / "genesis.json")
    main_accounts = {p.participant_id for p in genesis.participants}
    every = tuple(a.account_id for a in genesis.accounts)
    customers = tuple(a for a in every if a not in main_accounts)
    return customers or every


async def _blocks_in(bank: Bank, heights: list[int]) -> list[dict[str, Any]]:
    """The blocks at `heights` (for their certificates' rounds), a few requests at once."""
    limit = asyncio.Semaphore(BLOCK_FETCH_CONCURRENCY)
    async with ApiClient(bank.api_url, Credentials(bank.bank_id, bank.key)) as api:

        async def one(height: int) -> dict[str, Any]:
            async with limit:
                for _ in range(RATE_LIMITED_TRIES):
                    try:
                        return await api.block(height)
                    except ApiError as exc:
                        # Thousands of blocks (a run of small blocks) pass the node's
                        # per-participant request rate: wait as its Retry-After asks.
                        if exc.code != "RATE_LIMITED":
                            raise
                        await asyncio.sleep(1.0)
                return await api.block(height)

        return list(await asyncio.gather(*(one(h) for h in heights)))


def run_figures(
    network: Network,
    result: LoadResult,
    ceiling: Ceiling,
    before: dict[str, Resources | None],
    during: dict[str, Resources | None],
    after: dict[str, Resources | None],
) -> dict[str, Any]:
    """Everything reported about one run, as one flat-ish JSON object."""
    figures = result.window_figures()
    window = [b for b in result.blocks if result.window_start <= b.at < result.window_end]
    heights = [b.height for b in window]
    rounds: list[int] = []
    if heights:
        try:
            blocks = asyncio.run(_blocks_in(banks_of(network.entries)[0], heights))
            rounds = [int(b["certificate"]["round"]) + 1 for b in blocks]
        except ApiError:
            rounds = []
    nodes: dict[str, dict[str, float]] = {}
    cpu_in_window = 0.0
    for node_id in network.pids:
        start, end, last = before.get(node_id), during.get(node_id), after.get(node_id)
        if start is None or end is None or last is None:
            continue
        cpu_in_window += end.cpu_s - start.cpu_s
        nodes[node_id] = {
            "cpu_s_window": round(end.cpu_s - start.cpu_s, 2),
            "cpu_s_run": round(last.cpu_s - start.cpu_s, 2),
            "peak_rss_mb": round(last.peak_rss_bytes / 2**20, 1),
        }
    final_in_window = figures["final_in_window"]
    figures |= {
        "ceiling_tx_per_s": round(ceiling.tx_per_s, 1),
        "ratio_to_ceiling": round(figures["finalized_tx_per_s"] / ceiling.tx_per_s, 4),
        "raw_verify_per_cpu_second": round(ceiling.raw_verify_per_cpu_second),
        "raw_verify_per_cpu_second_one_core": round(ceiling.raw_verify_per_cpu_second_one_core),
        "cores": ceiling.cores,
        "signature_checks_per_transfer": ceiling.checks_per_transfer,
        "blocks_in_window": len(window),
        "blocks_per_s": round(len(window) / figures["window_s"], 2) if figures["window_s"] else 0,
        "tx_per_block": round(sum(b.tx_count for b in window) / len(window), 1) if window else 0,
        # None when the blocks could not be read: never a figure that looks measured.
        "rounds_per_height": round(sum(rounds) / len(rounds), 3) if rounds else None,
        "rounds_max": max(rounds, default=None),
        "node_cpu_s_window": round(cpu_in_window, 2),
        "node_cpu_ms_per_final_tx": round(1000 * cpu_in_window / final_in_window, 3)
        if final_in_window
        else 0,
        "nodes": nodes,
    }
    return figures


def _sample(pids: dict[str, int]) -> dict[str, Resources | None]:
    return {node_id: resources_of(pid) for node_id, pid in pids.items()}


def one_run(
    network: Network,
    ceiling: Ceiling,
    *,
    rate_per_s: float,
    warmup_s: float,
    duration_s: float,
    accounts_targets: tuple[str, ...],
    clients: int,
    drain_s: float,
    progress: Any,
    seconds_out: list[Progress] | None = None,
) -> dict[str, Any]:
    """One load run at a fixed rate on a running network, and its figures."""
    options = LoadOptions(
        genesis_path=network.directory / "genesis.json",
        rate_per_s=rate_per_s,
        warmup_s=warmup_s,
        duration_s=duration_s,
        targets=accounts_targets,
        clients_per_bank=clients,
        drain_s=drain_s,
    )
    samples: dict[str, dict[str, Resources | None]] = {}

    def on_second(second: Progress) -> None:
        progress(second.line())
        # The node CPU of the window: sampled at the seconds nearest its two ends.
        if "window_start" not in samples and second.elapsed_s >= warmup_s:
            samples["window_start"] = _sample(network.pids)
        if second.elapsed_s <= warmup_s + duration_s:
            samples["window_end"] = _sample(network.pids)

    before = _sample(network.pids)
    result = asyncio.run(run_load(banks_of(network.entries), options, on_second=on_second))
    after = _sample(network.pids)
    if seconds_out is not None:
        seconds_out.extend(result.seconds)
    figures = run_figures(
        network,
        result,
        ceiling,
        samples.get("window_start", before),
        samples.get("window_end", after),
        after,
    )
    for node_id, usage in figures["nodes"].items():
        start, last = before.get(node_id), after.get(node_id)
        if start is not None and last is not None:
            usage["cpu_s_run"] = round(last.cpu_s - start.cpu_s, 2)
    return {"rate_offered_per_s": rate_per_s, **figures}


def clean(figures: dict[str, Any]) -> bool:
    return bool(figures["refused"] == 0 and figures["not_final"] == 0)


def search_max(
    network: Network,
    ceiling: Ceiling,
    targets: tuple[str, ...],
    clients: int,
    progress: Any,
) -> tuple[float, list[dict[str, Any]]]:
    """The highest rate whose p99 stays under P99_MS_MAX with nothing refused or left
    unfinalized: doubling from MAX_START_RATE until a short trial fails, then bisection."""

    def passes(rate: float) -> bool:
        progress(f"--max: trying {rate:,.0f} transfers/s")
        figures = one_run(
            network,
            ceiling,
            rate_per_s=rate,
            warmup_s=MAX_TRIAL_WARMUP_S,
            duration_s=MAX_TRIAL_DURATION_S,
            accounts_targets=targets,
            clients=clients,
            drain_s=TRIAL_DRAIN_S,
            progress=progress,
        )
        ok = clean(figures) and figures["latency_ms_p99"] < P99_MS_MAX
        trials.append({"rate": rate, "passed": ok, "p99_ms": figures["latency_ms_p99"],
                       "finalized_tx_per_s": figures["finalized_tx_per_s"]})  # fmt: skip
        progress(
            f"--max: {rate:,.0f}/s {'passed' if ok else 'failed'}"
            f" (p99 {figures['latency_ms_p99']:.0f} ms, not final {figures['not_final']},"
            f" refused {figures['refused']})"
        )
        return ok

    trials: list[dict[str, Any]] = []
    good, bad = 0.0, MAX_START_RATE
    while passes(bad):
        good, bad = bad, 2 * bad
    for _ in range(MAX_BISECTIONS):
        if good == 0:
            middle = bad / 2
        else:
            middle = (good + bad) / 2
        if passes(middle):
            good = middle
        else:
            bad = middle
    return good, trials


def print_table(figures: dict[str, Any]) -> None:
    f = figures
    rows = [
        ("offered", f"{f['rate_offered_per_s']:,.0f} transfers/s"),
        ("finalized in window", f"{f['finalized_tx_per_s']:,.1f} transfers/s"
         f" ({f['final_in_window']} in {f['window_s']} s)"),
        ("ceiling", f"{f['ceiling_tx_per_s']:,.0f} transfers/s = {f['raw_verify_per_cpu_second']:,}"
         f" verifies/CPU s x {f['cores']} cores / {f['signature_checks_per_transfer']} checks"
         f" (every core verifying; one alone: {f['raw_verify_per_cpu_second_one_core']:,}/s)"),
        ("block rate", f"{f['blocks_per_s']} blocks/s"),
        ("ratio to ceiling", f"{f['ratio_to_ceiling']:.3f}"),
        ("latency p50/p90/p99/max", f"{f['latency_ms_p50']:.0f} / {f['latency_ms_p90']:.0f}"
         f" / {f['latency_ms_p99']:.0f} / {f['latency_ms_max']:.0f} ms (from due time)"),
        ("submitted / final", f"{f['submitted']} / {f['final']}"),
        ("refused", f"{f['refused']} {f['refused_by_code'] or ''}"),
        ("sent again (503, 429, none)", f"{sum(f['retried_by_code'].values())}"
         f" {f['retried_by_code'] or ''}"),
        ("not final after drain", f"{f['not_final']}"),
        ("blocks in window", f"{f['blocks_in_window']}, {f['tx_per_block']} transfers per block,"
         + (f" {f['rounds_per_height']} rounds per height (max {f['rounds_max']})"
            if f["rounds_per_height"] is not None else " rounds per height unread")),
        ("node CPU in window", f"{f['node_cpu_s_window']} s,"
         f" {f['node_cpu_ms_per_final_tx']} ms per finalized transfer"),
        ("load clients", f"{f['client_cpu_s']} CPU s in the load processes, {f['counter_cpu_s']}"
         f" in the counter; pre-signing {f['sign_seconds']} s"),
    ]  # fmt: skip
    for node_id, usage in f["nodes"].items():
        rows.append(
            (f"  {node_id}", f"CPU {usage['cpu_s_window']} s in window,"
             f" {usage['cpu_s_run']} s in run, peak RSS {usage['peak_rss_mb']} MB")
        )  # fmt: skip
    for label, value in rows:
        print(f"{label:<29}{value}")


# -- commands ---------------------------------------------------------------------------


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def cmd_bench_network(args: argparse.Namespace) -> int:
    tolerated = (args.validators - 1) // 3
    if args.down and (args.home or args.down > tolerated):
        print(
            f"somnet bench network: --down {args.down}: a fresh network of {args.validators}"
            f" validators tolerates {tolerated} down (and --home networks are not stopped)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    with network_for(args, _progress) as network:
        ceiling = measure_ceiling(len(network.pids))
        _progress(
            f"ceiling: {ceiling.raw_verify_per_cpu_second:,.0f} verifies per CPU s (every core"
            f" verifying; one alone {ceiling.raw_verify_per_cpu_second_one_core:,.0f}) x"
            f" {ceiling.cores} cores / {ceiling.checks_per_transfer} nodes"
            f" = {ceiling.tx_per_s:,.0f} transfers/s"
        )
        targets = _targets(network.directory)
        if args.down:
            # Each turn of a stopped proposer costs a propose timeout until the order
            # passes over it (it missed its turns in the last PROPOSER_WINDOW_HEIGHTS
            # heights): let that happen before anything is measured.
            _progress(f"settling: {DOWN_SETTLE_S:.0f} s at {DOWN_SETTLE_RATE:.0f}/s, not measured")
            one_run(
                network, ceiling, rate_per_s=DOWN_SETTLE_RATE, warmup_s=0,
                duration_s=DOWN_SETTLE_S, accounts_targets=targets, clients=1,
                drain_s=TRIAL_DRAIN_S, progress=lambda _: None,
            )  # fmt: skip
        trials: list[dict[str, Any]] = []
        rate = args.rate
        if args.max:
            rate, trials = search_max(network, ceiling, targets, args.clients, _progress)
            if rate == 0:
                print("somnet bench network: no rate passed", file=sys.stderr)
                return EXIT_UNCLEAN
            _progress(f"--max: {rate:,.0f} transfers/s; the full run follows")
        seconds: list[Progress] = []
        figures = one_run(
            network,
            ceiling,
            rate_per_s=rate,
            warmup_s=args.warmup,
            duration_s=args.duration,
            accounts_targets=targets,
            clients=args.clients,
            drain_s=args.drain,
            progress=_progress,
            seconds_out=seconds,
        )
    figures["validators"] = sum(1 for e in network.entries if e.role != "bank")
    figures["banks"] = sum(1 for e in network.entries if e.role == "bank")
    figures["machine"] = f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
    if trials:
        figures["max_search"] = trials
    if args.plot:
        from cli.plot import write_run_plot

        write_run_plot(Path(args.plot), seconds, warmup_s=args.warmup)
        _progress(f"plot written to {args.plot}")
    print_table(figures)
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    return EXIT_OK if clean(figures) else EXIT_UNCLEAN


def cmd_bench_payout(args: argparse.Namespace) -> int:
    legs_per_tx = min(args.legs_per_tx, args.legs)
    payouts = math.ceil(args.legs / legs_per_tx)
    if args.accounts is None:
        args.accounts = min(args.legs, 10_000)
    with network_for(args, _progress) as network:
        options = LoadOptions(
            genesis_path=network.directory / "genesis.json",
            rate_per_s=None,
            duration_s=0.5,
            targets=_targets(network.directory),
            drain_s=args.drain,
            payout_legs=legs_per_tx,
            payout_count=payouts,
        )
        _progress(f"pre-signing {payouts} payouts of {legs_per_tx} legs")
        before = _sample(network.pids)
        result = asyncio.run(
            run_load(banks_of(network.entries), options, on_second=lambda s: _progress(s.line()))
        )
        after = _sample(network.pids)
    tally = result.tally
    finals = [final for _, final, _ in tally.finalized]
    legs_final = sum(legs for _, _, legs in tally.finalized)
    all_final = tally.pending == 0 and not tally.refused
    # Until the last leg is final: only meaningful when every leg became final.
    last_s = (max(finals) - result.start) if finals and all_final else None
    cpu = {}
    for node_id in network.pids:
        start, end = before.get(node_id), after.get(node_id)
        if start is not None and end is not None:
            cpu[node_id] = round(end.cpu_s - start.cpu_s, 2)
    figures = {
        "legs": payouts * legs_per_tx,
        "legs_per_tx": legs_per_tx,
        "payouts": payouts,
        "accounts": len(options.targets),
        "legs_final": legs_final,
        "payouts_final": len(tally.finalized),
        "seconds_to_last_final": None if last_s is None else round(last_s, 3),
        "legs_settled_per_s": round(legs_final / last_s, 1) if last_s else None,
        "refused": sum(tally.refused.values()),
        "refused_by_code": dict(sorted(tally.refused.items())),
        "retried_by_code": dict(sorted(tally.retried.items())),
        "not_final": tally.pending,
        "drain_s": args.drain,
        "sign_seconds": round(result.sign_seconds, 2),
        "node_cpu_s": cpu,
    }
    print(f"{figures['legs']:,} legs in {payouts} payouts of {legs_per_tx} legs"
          f" to {figures['accounts']:,} accounts")  # fmt: skip
    if last_s is not None:
        print(f"last leg final after {last_s:.2f} s: {legs_final / last_s:,.0f} legs/s")
    else:
        print(f"NOT every leg final within {args.drain:g} s: {legs_final:,} legs final")
    print(f"refused {figures['refused']} {figures['refused_by_code'] or ''},"
          f" not final {figures['not_final']} payouts")  # fmt: skip
    print(f"node CPU seconds: {cpu}")
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    ok = figures["refused"] == 0 and figures["not_final"] == 0
    return EXIT_OK if ok else EXIT_UNCLEAN


def _add_network_options(parser: argparse.ArgumentParser, accounts_default: int | None) -> None:
    parser.add_argument(
        "--validators", type=number_in(1, VALIDATORS_MAX, integer=True), default=4,
        help="validators (4)",
    )  # fmt: skip
    parser.add_argument(
        "--banks", type=number_in(1, BANKS_MAX, integer=True), default=1, help="bank nodes (1)"
    )
    parser.add_argument(
        "--accounts",
        type=number_in(0, ACCOUNTS_MAX, integer=True),
        default=accounts_default,
        help="customer accounts in genesis, credited at random",
    )
    parser.add_argument("--home", help="drive the running network in this directory instead")
    parser.add_argument(
        "--base-port",
        type=number_in(0, 65_000, integer=True),
        default=0,
        help="first port of a fresh network (0: a free block)",
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON result line")


def add_network_arguments(benches: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = benches.add_parser(
        "network",
        help="a real network under open-loop load: finalized/s, latency, ceiling",
        description="Start a network of real node processes (or use --home), measure the"
        " ceiling (raw libsodium verifies per CPU second x cores / nodes), then send"
        " pre-signed transfers from separate load processes through the batch route at a"
        " fixed rate, open loop, latency from each batch's due time. Reports finalized"
        " transfers per second inside the window after the warm-up (never the drain),"
        " latency p50/p90/p99/max, refusals by code, blocks, transfers per block, rounds per"
        " height, CPU seconds and peak RSS per node. Progress on stderr every second.",
    )
    _add_network_options(parser, ACCOUNTS_DEFAULT)
    rate = parser.add_mutually_exclusive_group()
    add_rate_option(rate, rate_per_s=500.0)
    rate.add_argument(
        "--max",
        action="store_true",
        help="find the highest rate with p99 under 1 s and nothing unfinalized, then run it",
    )
    add_window_options(parser, duration_s=10.0, warmup_s=2.0)
    parser.add_argument("--plot", metavar="FILE", help="write throughput and latency (PNG)")
    parser.add_argument(
        "--down", type=number_in(0, VALIDATORS_MAX, integer=True), default=0,
        help="validators killed once the fresh network is ready, down for the whole run"
        " (0; at most f, the faults the validator set tolerates)",
    )  # fmt: skip
    parser.set_defaults(handler=cmd_bench_network)


def add_payout_arguments(benches: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = benches.add_parser(
        "payout",
        help="a social payout: legs settled per second, time until the last is final",
        description="Start a network (or use --home), pre-sign payouts of --legs-per-tx"
        " legs each from the banks' main accounts to the genesis accounts, submit them all"
        " at once through the batch route, and report legs settled per second and the"
        " time from the submission until the last leg is final.",
    )
    _add_network_options(parser, None)
    parser.add_argument(
        "--legs", type=number_in(1, LEGS_MAX, integer=True), default=100_000,
        help="legs in all (100000)",
    )  # fmt: skip
    parser.add_argument(
        "--legs-per-tx", type=number_in(1, PAYOUT_LEGS_MAX, integer=True),
        default=PAYOUT_LEGS_MAX, help="legs per payout (1000)",
    )  # fmt: skip
    parser.add_argument(
        "--drain", type=number_in(0, SECONDS_MAX), default=300.0, help="seconds to wait (300)"
    )
    parser.set_defaults(handler=cmd_bench_payout)
