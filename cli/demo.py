"""`somnet demo`: a local network of real node processes with traffic between the banks.

Initialises DIR (default ./devnet) if needed, starts 4 validators and 2 bank nodes as
child processes, then sends signed transfers between the banks and prints, every second,
the height, the finalized transfers and submit-to-final latency, until Ctrl-C.

When a local EVM chain can be started (anvil, installed by `make tools` into .tools/),
the central bank's node anchors every ANCHOR_EVERY blocks to it, and every 5 seconds
the demo prints the last finalized anchor and the anchoring lag.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import subprocess
import time
from pathlib import Path

from cli.api_client import ApiClient, ApiError, blocking, client_for_home
from cli.devnet import (
    ISSUER_ID,
    anchor_env,
    init_network,
    load_network,
    start_nodes,
    stop_nodes,
    wait_ready,
)
from cli.entry import NodeEntry
from cli.load import print_second, summary
from cli.traffic import LoadOptions, LoadResult, Progress, banks_of, run_load
from node.genesis import load_genesis

__all__ = ["register"]


ANVIL = Path(".tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
ANCHOR_EVERY = 10
ANVIL_START_S = 20


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def start_anvil(home: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    """anvil on a free loopback port (chain id 97, finalized 2 blocks behind the head,
    a block a second), or None when it is not installed or does not start."""
    if not ANVIL.exists():
        print("somnet demo: no anvil in .tools (make tools): running without anchoring")
        return None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (home / "anvil.log").open("ab") as log:
        process = subprocess.Popen(
            [str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--chain-id", "97",
             "--slots-in-an-epoch", "1", "--block-time", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ANVIL_START_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    process.wait()
    print("somnet demo: anvil did not start (see anvil.log): running without anchoring")
    return None


def print_anchor(issuer: NodeEntry) -> None:
    try:
        client = client_for_home(issuer.home, api_url=issuer.api_url)
        summary = blocking(client, ApiClient.anchors)
    except ApiError as exc:
        print(f"  anchor: {exc}", flush=True)
        return
    finalized = next((a for a in summary["anchors"] if a["status"] == "finalized"), None)
    if finalized is None:
        print(f"  anchor: none finalized yet (error: {summary['error']})", flush=True)
        return
    print(
        f"  anchor: last finalized height={finalized['height']} "
        f"evm_tx={finalized['evm_tx_hash']} evm_block={finalized['evm_block_number']} "
        f"lag={summary['lag_blocks']} blocks "
        f"(finalized on the EVM chain {finalized['finalized_at_height'] - finalized['height']}"
        " blocks after it settled)",
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    # Explicit, because a shell may start us with SIGINT ignored, and SIGTERM would
    # otherwise end the demo without stopping its nodes (they run in their own session).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)
    home = Path(args.home)
    if not (home / "network.json").exists():
        init_network(
            home,
            validators=4,
            banks=2,
            chain_id="som-devnet",
            host="127.0.0.1",
            base_port=args.base_port,
        )
    entries = load_network(home)
    genesis = load_genesis(home / "genesis.json")
    anvil = start_anvil(home)
    env_by_node = None
    if anvil is not None:
        args.anchor_rpc, args.anchor_every, args.anchor_key = anvil[1], ANCHOR_EVERY, None
        args.anchor_chain_id = 97
        env_by_node = anchor_env(home, args)
        print(f"somnet demo: anvil at {anvil[1]}; {ISSUER_ID} anchors every {ANCHOR_EVERY} blocks")
    print(f"somnet demo: starting {len(entries)} nodes in {home} (logs: {home}/<node>/node.log)")
    children = start_nodes(entries, env_by_node)
    result: LoadResult | None = None
    issuer = next(e for e in entries if e.node_id == ISSUER_ID)

    def on_second(progress: Progress) -> None:
        print_second(progress)
        if anvil is not None and round(progress.elapsed_s) % 5 == 0:
            print_anchor(issuer)

    try:
        for entry in entries:
            print(f"  {entry.node_id:8} {entry.role:9} API {entry.api_url}")
        if not wait_ready(entries, children):
            print("somnet demo: the network did not become ready; see the node logs")
            return 1
        print(f"ready: sending {args.rate:g} transfers/s between the banks; Ctrl-C stops\n")
        options = LoadOptions(
            genesis_path=home / "genesis.json",
            rate_per_s=args.rate,
            duration_s=args.duration,
            targets=tuple(a.account_id for a in genesis.accounts),
            remittance="somnet traffic",
        )
        result = asyncio.run(run_load(banks_of(entries), options, on_second=on_second))
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        if anvil is not None:
            print_anchor(issuer)
        stop_nodes(children)
        if anvil is not None:
            anvil[0].terminate()
            anvil[0].wait(timeout=10)
    if result is not None and args.duration is not None:
        figures = summary(result, args.rate)
        for key, value in figures.items():
            print(f"{key:20} {value}")
        return 0 if figures["final"] > 0 and figures["refused"] == 0 else 1
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo", help="run a local 4-validator, 2-bank network with transfer traffic"
    )
    parser.add_argument("--home", default="devnet", help="network directory (default devnet)")
    parser.add_argument("--rate", type=float, default=20.0, help="transfers per second")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds (default: until Ctrl-C)"
    )
    parser.add_argument("--base-port", type=int, default=26600)
    parser.set_defaults(handler=run)
