"""CPU seconds per finalized transfer, per node process, of a 4-validator + 1-bank network
of real node processes; optionally a py-spy or strace -c profile of every node over the
same window. The figures of issue 12's hot-path work come from this.

    .venv/bin/python -m tests.load.hotpath_profile --dir /tmp/hp-net [--count 20000]
        [--rate 1500] [--batch 100] [--profile none|pyspy|strace] [--label NAME]
    .venv/bin/python -m tests.load.hotpath_profile --top /tmp/hp-out/NAME/val-1.txt

Why CPU seconds rather than throughput: the machine is shared, so wall figures move with
everyone else's load, while the CPU time a process spends per transfer (utime + stime
from /proc/PID/stat, between the first submission and the moment the last transfer is
final) barely does. Transfers are signed before the window (v2, with a sealed remittance,
as a bank sends them) and go through POST /v1/transactions/batch at a fixed rate; a
batch item answered CATCHING_UP (the bank node briefly behind) is sent again. Finality is
read from GET /v1/blocks at the bank node. `--profile pyspy` writes py-spy's raw
collapsed stacks per node (`--top FILE` prints the top functions by share of samples);
`--profile strace` writes `strace -c -f` per node. Both slow the nodes: compare CPU
figures only between runs of the same profile. Not a test: no assertions on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from cli.api_client import ApiClient, ApiError, Credentials
from cli.devnet import init_network, load_network, start_nodes, stop_nodes, wait_ready
from cli.entry import NodeEntry
from node.genesis import load_genesis
from node.keys import load_key_file
from node.tx import decode_tx, sign_transfer

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
BANK = "bank-1"
RETRY_S = 0.05


def cpu_s(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS_PER_S, int(fields[12]) / CLOCK_TICKS_PER_S


def sign_transfers(home: Path, count: int, height: int) -> list[bytes]:
    genesis = load_genesis(home / "genesis.json")
    key = load_key_file(home / BANK / "node_key.json")
    rng = random.Random(1)
    targets = ["nbkr", "val-1", "val-2", "val-3"]
    return [
        sign_transfer(
            key,
            genesis.chain_id,
            signer=BANK,
            uetr=uuid.uuid4().bytes,
            expiry_height=height + 5_000,
            from_account=BANK,
            to_account=targets[n % len(targets)],
            amount=rng.randrange(1, 10_000),
            remittance="somnet traffic",
            recipients=genesis.remittance_keys(BANK, [targets[n % len(targets)]]),
        )
        for n in range(count)
    ]


async def drive(api: ApiClient, txs: list[bytes], hashes: list[str], rate: float,
                batch: int) -> int:  # fmt: skip
    """Send every transfer at `rate`, `batch` per request; returns once all are final
    or refused. Returns the refused count."""
    pending = set(hashes)
    refused = 0
    height = int((await api.status())["height"])

    async def follow() -> None:
        nonlocal height
        while pending:
            top = int((await api.status())["height"])
            while height < top:
                height += 1
                pending.difference_update((await api.block(height))["tx_hashes"])
            await asyncio.sleep(0.05)

    async def send(chunk: list[bytes], chunk_hashes: list[str]) -> None:
        nonlocal refused
        while chunk:
            try:
                results = await api.submit_batch(chunk)
            except ApiError as exc:
                if "CATCHING_UP" not in str(exc):
                    raise
                await asyncio.sleep(RETRY_S)
                continue
            again: list[int] = []
            for result in results:
                if result.get("code") == "CATCHING_UP":
                    again.append(result["index"])
                elif "code" in result:
                    refused += 1
                    pending.discard(chunk_hashes[result["index"]])
            chunk = [chunk[i] for i in again]
            chunk_hashes = [chunk_hashes[i] for i in again]
            if chunk:
                await asyncio.sleep(RETRY_S)

    follower = asyncio.create_task(follow())
    started = time.monotonic()
    sends = []
    for index in range(0, len(txs), batch):
        due = started + index / rate
        if due > time.monotonic():
            await asyncio.sleep(due - time.monotonic())
        end = index + batch
        sends.append(asyncio.create_task(send(txs[index:end], hashes[index:end])))
    await asyncio.gather(*sends)
    await asyncio.wait_for(follower, 120)
    return refused


def attach(kind: str, pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    if kind == "pyspy":
        py_spy = str(Path(sys.executable).parent / "py-spy")
        command = [py_spy, "record", "-p", str(pid), "-r", "200", "--format", "raw",
                   "-o", f"{out}.txt", "--nonblocking"]  # fmt: skip
    elif kind == "strace":
        command = ["strace", "-c", "-f", "-p", str(pid), "-o", f"{out}.strace"]
    else:
        return None
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def measure(args: argparse.Namespace, home: Path, entries: list[NodeEntry],
                  pids: dict[str, int]) -> dict[str, object]:  # fmt: skip
    bank = next(e for e in entries if e.role == "bank")
    chain_id = load_genesis(home / "genesis.json").chain_id
    out = Path(args.out) / args.label
    out.mkdir(parents=True, exist_ok=True)
    credentials = Credentials(BANK, load_key_file(bank.home / "node_key.json"))
    async with ApiClient(bank.api_url, credentials) as api:
        while not (await api.status()).get("caught_up"):  # noqa: ASYNC110 - polled over HTTP
            await asyncio.sleep(0.2)
        txs = sign_transfers(home, args.count, int((await api.status())["height"]))
        hashes = [decode_tx(tx, chain_id).tx_hash.hex() for tx in txs]
        before = {node: cpu_s(pid) for node, pid in pids.items()}
        profilers = [attach(args.profile, pid, out / node) for node, pid in pids.items()]
        started = time.monotonic()
        refused = await drive(api, txs, hashes, args.rate, args.batch)
        wall_s = time.monotonic() - started
        after = {node: cpu_s(pid) for node, pid in pids.items()}
    for profiler in profilers:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(30)
    final = args.count - refused
    per_1000 = 1000 / max(final, 1)
    return {
        "label": args.label,
        "profile": args.profile,
        "final": final,
        "refused": refused,
        "wall_s": round(wall_s, 1),
        "cpu_s_per_1000": {n: round((sum(after[n]) - sum(before[n])) * per_1000, 3) for n in pids},
        "sys_s_per_1000": {n: round((after[n][1] - before[n][1]) * per_1000, 3) for n in pids},
    }


def top(path: Path, count: int) -> None:
    """Self and inclusive share of samples per function of a py-spy raw profile."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, samples_text = line.rpartition(" ")
        samples = int(samples_text)
        total += samples
        frames = [re.sub(r" \((?:.*/)?([^/]+/[^/:]+):\d+\)", r" (\1)", f) for f in stack.split(";")]
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    print(f"{path}: {total} samples")
    for title, counter in (("self", own), ("inclusive", inclusive)):
        print(f"-- {title}")
        for frame, samples in counter.most_common(count):
            print(f"{samples / max(total, 1):6.1%}  {frame}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", help="the network directory (created if missing)")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=1500.0, help="transfers per second")
    parser.add_argument("--batch", type=int, default=100, help="transfers per request")
    parser.add_argument("--base-port", type=int, default=27700)
    parser.add_argument("--profile", default="none", choices=["none", "pyspy", "strace"])
    parser.add_argument("--out", default="/tmp/hp-out", help="profiles and results.jsonl")
    parser.add_argument("--label", default="run")
    parser.add_argument("--top", metavar="FILE", help="summarise a py-spy raw profile")
    args = parser.parse_args()
    if args.top:
        top(Path(args.top), 30)
        return 0
    if not args.dir:
        parser.error("--dir is required")
    home = Path(args.dir)
    if not (home / "network.json").exists():
        init_network(home, validators=4, banks=1, chain_id="som-devnet", host="127.0.0.1",
                     base_port=args.base_port)  # fmt: skip
    entries = load_network(home)
    children = start_nodes(entries)
    try:
        if not wait_ready(entries, children):
            print("the network did not become ready", file=sys.stderr)
            return 1
        pids = {e.node_id: children[e.node_id].pid for e in entries}
        result = asyncio.run(measure(args, home, entries, pids))
    finally:
        stop_nodes(children)
    print(json.dumps(result))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with (Path(args.out) / "results.jsonl").open("a") as results:
        results.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
