"""`somnet bench catchup`: how fast a node that is behind catches up (issue 12).

It starts a fresh network of real node processes on 127.0.0.1 in a temporary directory,
with two bank nodes of which one (the last) is left stopped. The other is driven with
N pre-signed transfers through the batch route (the load processes and the honest
finality counting of cli/traffic.py) until every one is final (new ones replace those
the bank refused, CATCHING_UP when it falls behind under load, in a few more passes).
Then the stopped bank node starts with an empty store, and this process follows its
status until it has settled the height the validators had reached when it started.
Reported:

- transfers and blocks caught up per second, from the process's start (the headline:
  what an operator waits) and from its API's first answer (sync only, without the
  start-up: reading genesis, opening the store, connecting to peers);
- the catching-up node's CPU seconds (from /proc: user + system), in all and per
  transfer, and its peak RSS;
- where the time goes: the node's own stage timers (`somnet_block_stage_seconds` on its
  metrics listener, wall seconds: decoding and validating synced blocks, applying them,
  storing them, the store's fsync included), and the rest of the sync time (waiting for
  peers' answers, the transport, framing, the API, or the CPU the machine's other
  processes took).

Progress lines go to stderr; the summary to stdout, and with --json stdout ends with one
JSON line. Exit 0 when every transfer became final and the node caught up, 1 otherwise,
2 on bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from cli.api_client import ApiClient, ApiError, Credentials
from cli.bench_network import (
    ACCOUNTS_MAX,
    BENCH_NODE_ENV,
    VALIDATORS_MAX,
    Resources,
    _targets,
    _wait_banks_caught_up,
    resources_of,
)
from cli.command import number_in
from cli.devnet import init_network, start_nodes, status_of, stop_nodes, wait_ready
from cli.entry import NodeEntry
from cli.ports import free_port_range
from cli.traffic import RATE_MAX, SECONDS_MAX, LoadOptions, banks_of, run_load
from node.keys import load_key_file

__all__ = ["add_catchup_arguments"]

EXIT_OK = 0
EXIT_UNCLEAN = 1
TRANSFERS_DEFAULT = 100_000
TRANSFERS_MAX = 10_000_000
RATE_DEFAULT = 2_000.0
ACCOUNTS_DEFAULT = 1_000
POLL_S = 0.05
LOAD_PASSES_MAX = 5
STAGE_METRIC = "somnet_block_stage_seconds_total"


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class CatchUp:
    """What following the catching-up node saw (monotonic seconds from its start)."""

    target_height: int
    api_up_s: float | None  # its first status answer
    caught_up_s: float | None  # its first status at or past target_height
    height: int  # the last height it answered
    cpu_at_api_up: Resources | None
    cpu_at_end: Resources | None
    stage_seconds: dict[str, float]


async def follow(
    entry: NodeEntry,
    pid: int,
    *,
    target_height: int,
    started: float,
    timeout_s: float,
    metrics_url: str,
    exited: Any,
) -> CatchUp:
    """Ask the node's status every POLL_S until its height reaches `target_height`, it
    exits or `timeout_s` passes; then read its CPU and stage timers."""
    credentials = Credentials(entry.node_id, load_key_file(entry.home / "node_key.json"))
    api_up_s = caught_up_s = None
    height = 0
    cpu_at_api_up = None
    next_line = started + 1
    async with ApiClient(entry.api_url, credentials) as api:
        while time.monotonic() - started < timeout_s and not exited():
            try:
                height = int((await api.status())["height"])
            except ApiError:
                await asyncio.sleep(POLL_S)  # not listening yet
                continue
            now = time.monotonic()
            if api_up_s is None:
                api_up_s = now - started
                cpu_at_api_up = resources_of(pid)
            if height >= target_height:
                caught_up_s = now - started
                break
            if now >= next_line:
                next_line += 1
                _progress(f"catch-up t={now - started:5.1f}s height {height}/{target_height}")
            await asyncio.sleep(POLL_S)
    cpu_at_end = resources_of(pid)
    return CatchUp(
        target_height=target_height,
        api_up_s=api_up_s,
        caught_up_s=caught_up_s,
        height=height,
        cpu_at_api_up=cpu_at_api_up,
        cpu_at_end=cpu_at_end,
        stage_seconds=await _stage_seconds(metrics_url),
    )


async def _stage_seconds(metrics_url: str) -> dict[str, float]:
    """The node's `somnet_block_stage_seconds` by stage; empty if it has none (an older
    node) or the metrics listener does not answer."""
    try:
        async with aiohttp.ClientSession() as session, session.get(metrics_url) as response:
            text = await response.text()
    except (aiohttp.ClientError, OSError, TimeoutError):
        return {}
    stages = {}
    prefix = STAGE_METRIC + '{stage="'
    for line in text.splitlines():
        if line.startswith(prefix):
            name, _, value = line[len(prefix) :].partition('"} ')
            stages[name] = float(value)
    return stages


def catchup_figures(
    *, transfers: int, caught: CatchUp, load: dict[str, Any], validators: int
) -> dict[str, Any]:
    """Everything reported, as one flat-ish JSON object."""
    figures: dict[str, Any] = {
        "validators": validators,
        "transfers": transfers,
        "blocks": caught.target_height,
        "caught_up": caught.caught_up_s is not None,
        "height_reached": caught.height,
        **load,
        "machine": f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}",
    }
    if caught.caught_up_s is None or caught.api_up_s is None:
        return figures
    total_s, sync_s = caught.caught_up_s, caught.caught_up_s - caught.api_up_s
    figures.update(
        seconds_total=round(total_s, 3),
        seconds_start=round(caught.api_up_s, 3),
        seconds_sync=round(sync_s, 3),
        transfers_per_s=round(transfers / total_s, 1),
        transfers_per_s_sync=round(transfers / sync_s, 1) if sync_s > 0 else None,
        blocks_per_s=round(caught.target_height / total_s, 1),
    )
    end, up = caught.cpu_at_end, caught.cpu_at_api_up
    if end is not None and up is not None:
        stages = {name: round(s, 3) for name, s in sorted(caught.stage_seconds.items())}
        figures.update(
            node_cpu_s=round(end.cpu_s, 2),
            node_cpu_s_start=round(up.cpu_s, 2),
            node_cpu_s_sync=round(end.cpu_s - up.cpu_s, 2),
            node_cpu_us_per_transfer=round(1e6 * end.cpu_s / transfers, 1) if transfers else None,
            node_peak_rss_mb=round(end.peak_rss_bytes / 2**20, 1),
            stage_seconds=stages,
            # The sync time beside the timed stages.
            sync_rest_s=round(max(0.0, sync_s - sum(stages.values())), 2),
        )
    return figures


def print_summary(f: dict[str, Any]) -> None:
    rows = [
        ("network", f"{f['validators']} validators, 1 bank driven, 1 bank catching up"),
        ("load", f"{f['final']} of {f['submitted']} transfers final, {f['refused']} refused"
         f" {f['refused_by_code'] or ''} in {f['load_passes']} passes, {f['load_seconds']} s"),
        ("caught up", f"{f['caught_up']} (height {f['height_reached']} of {f['blocks']})"),
    ]  # fmt: skip
    if "seconds_total" in f:
        rows += [
            ("from start", f"{f['seconds_total']} s: {f['transfers_per_s']:,.0f} transfers/s,"
             f" {f['blocks_per_s']:,.1f} blocks/s"),
            ("  start-up (API up)", f"{f['seconds_start']} s"),
            ("  sync", f"{f['seconds_sync']} s: {f['transfers_per_s_sync'] or 0:,.0f} transfers/s"),
        ]  # fmt: skip
    if "node_cpu_s" in f:
        stages = ", ".join(f"{k} {v} s" for k, v in f["stage_seconds"].items()) or "(no timers)"
        rows += [
            ("node CPU", f"{f['node_cpu_s']} s ({f['node_cpu_s_start']} s to API up),"
             f" {f['node_cpu_us_per_transfer']} us per transfer, peak RSS"
             f" {f['node_peak_rss_mb']} MB"),
            ("  timed stages (wall)", stages),
            ("  rest of the sync", f"{f['sync_rest_s']} s (waiting for peers, transport,"
             " framing, API; or the CPU, taken by others)"),
        ]  # fmt: skip
    rows.append(("machine", f"{f['machine']} (shared: wall figures are disturbed)"))
    for label, value in rows:
        print(f"{label:<22}{value}")


def cmd_bench_catchup(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="somnet-bench-catchup-") as temporary:
        directory = Path(temporary) / "net"
        entries = init_network(
            directory,
            validators=args.validators,
            banks=2,
            chain_id="som-bench",
            host="127.0.0.1",
            base_port=args.base_port or free_port_range(2 * (args.validators + 2)),
            accounts=args.accounts,
        )
        catcher = [e for e in entries if e.role == "bank"][-1]
        others = [e for e in entries if e is not catcher]
        env = {e.node_id: BENCH_NODE_ENV for e in entries}
        metrics_port = free_port_range(1)
        env[catcher.node_id] = {
            **BENCH_NODE_ENV,
            "SOMNET_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
        }
        _progress(f"starting {args.validators} validators and 1 bank in {directory};"
                  f" {catcher.node_id} stays stopped")  # fmt: skip
        children = start_nodes(others, env)
        try:
            if not wait_ready(others, children):
                raise RuntimeError(f"the network did not become ready; logs in {directory}")
            _wait_banks_caught_up(others)
            load, transfers = _drive(args, directory, others)
            validators = [e for e in others if e.role != "bank"]
            target = max(int(status_of(e)["height"]) for e in validators)
            _progress(f"{transfers} transfers final; starting {catcher.node_id},"
                      f" {target} blocks behind")  # fmt: skip
            started = time.monotonic()
            children.update(start_nodes([catcher], env))
            child = children[catcher.node_id]
            caught = asyncio.run(
                follow(
                    catcher,
                    child.pid,
                    target_height=target,
                    started=started,
                    timeout_s=args.timeout,
                    metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
                    exited=lambda: child.poll() is not None,
                )
            )
        finally:
            stop_nodes(children)
    figures = catchup_figures(
        transfers=transfers, caught=caught, load=load, validators=args.validators
    )
    print_summary(figures)
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    clean = figures["caught_up"] and transfers == args.transfers and load["not_final"] == 0
    return EXIT_OK if clean else EXIT_UNCLEAN


def _drive(
    args: argparse.Namespace, directory: Path, others: list[NodeEntry]
) -> tuple[dict[str, Any], int]:
    """Send the transfers through the running bank at --rate until all are final; their
    figures and how many became final. Transfers the bank refused (CATCHING_UP when it
    falls behind under load) are replaced by new ones in another pass, up to
    LOAD_PASSES_MAX passes, so that the late node is --transfers behind."""
    started = time.monotonic()
    submitted = final = not_final = 0
    refused: Counter[str] = Counter()
    passes = 0
    while final < args.transfers and passes < LOAD_PASSES_MAX:
        wanted = args.transfers - final
        options = LoadOptions(
            genesis_path=directory / "genesis.json",
            rate_per_s=args.rate,
            duration_s=wanted / args.rate,
            targets=_targets(directory),
            drain_s=args.drain,
        )
        _progress(f"sending {wanted} pre-signed transfers at {args.rate:,.0f}/s")
        result = asyncio.run(
            run_load(banks_of(others), options, on_second=lambda s: _progress(s.line()))
        )
        tally = result.tally
        passes += 1
        submitted += tally.submitted
        final += len(tally.finalized)
        not_final += tally.pending
        refused.update(tally.refused)
        if tally.pending:
            break  # not final after the drain: something is wrong, not merely busy
    load = {
        "rate_offered_per_s": args.rate,
        "load_passes": passes,
        "submitted": submitted,
        "final": final,
        "refused": sum(refused.values()),
        "refused_by_code": dict(sorted(refused.items())),
        "not_final": not_final,
        "load_seconds": round(time.monotonic() - started, 1),
    }
    return load, final


def add_catchup_arguments(benches: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = benches.add_parser(
        "catchup",
        help="a node N transfers behind: transfers and blocks caught up per second",
        description="Start a network of real node processes with two bank nodes, one of"
        " them stopped; drive N pre-signed transfers through the other until all are"
        " final; then start the stopped node with an empty store and measure the time"
        " until it has settled the validators' height. Reports transfers and blocks"
        " caught up per second (from its start and from its API's first answer), its CPU"
        " seconds, and where the time goes (its stage timers: sync decode and validate,"
        " apply, store; the rest of its CPU; the time it did not run).",
    )
    parser.add_argument(
        "--transfers", type=number_in(1, TRANSFERS_MAX, integer=True), default=TRANSFERS_DEFAULT,
        help="transfers behind (100000)",
    )  # fmt: skip
    parser.add_argument(
        "--validators", type=number_in(1, VALIDATORS_MAX, integer=True), default=4,
        help="validators (4)",
    )  # fmt: skip
    parser.add_argument(
        "--rate", type=number_in(0.1, RATE_MAX), default=RATE_DEFAULT,
        help="transfers per second sent (2000)",
    )  # fmt: skip
    parser.add_argument(
        "--accounts", type=number_in(1, ACCOUNTS_MAX, integer=True), default=ACCOUNTS_DEFAULT,
        help="customer accounts (1000)",
    )  # fmt: skip
    parser.add_argument(
        "--drain", type=number_in(1, SECONDS_MAX), default=60.0, help="seconds to wait final (60)"
    )
    parser.add_argument(
        "--timeout", type=number_in(1, SECONDS_MAX), default=600.0,
        help="seconds to wait the catch-up (600)",
    )  # fmt: skip
    parser.add_argument(
        "--base-port", type=number_in(0, 65_000, integer=True), default=0,
        help="first port of the network (a free block)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="end with one JSON result line")
    parser.set_defaults(handler=cmd_bench_catchup)
