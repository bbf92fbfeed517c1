"""A store writer for the crash test: settles blocks of signed transfers until killed.

Run as `python -m tests.integration.crash_writer STORE_DIR` from the repository root. It
restores the ledger from the store (the node's restart path), then settles one block of
real signed transfers after another through Ledger.apply_block and Store.commit_block,
and prints each height to stdout, flushed, only after commit_block has returned: every
printed height is a promise that the block is durable. Before that it prints "opening"
just before it opens the store and "ready" once the ledger is restored, so the test can
aim its kills at the restore or at the commits without guessing how long a start takes.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from node.bench import CHAIN_ID, make_world, settle, sign_transfer_batch
from node.ledger import open_ledger
from node.store import Store

ACCOUNTS = 200
BLOCK_SIZE = 16
EXPIRY_HEIGHTS = 3  # each block's transfers expire soon after it
MAP_SIZE_BYTES = 256 * 1024 * 1024


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("store", type=Path)
    parser.add_argument("--blocks", type=int, default=1_000_000, help="stop after this many")
    args = parser.parse_args(argv)
    world = make_world(ACCOUNTS, seed=7)
    say("opening")
    with Store.open(args.store, chain_id=CHAIN_ID, map_size_bytes=MAP_SIZE_BYTES) as store:
        ledger = open_ledger(world.genesis, store)
        say("ready")
        for _ in range(args.blocks):
            height = ledger.height + 1
            txs = sign_transfer_batch(
                world,
                BLOCK_SIZE,
                first_index=height * BLOCK_SIZE,
                expiry_height=height + EXPIRY_HEIGHTS,
                rng=random.Random(height),
            )
            settled = settle(world, ledger, store, txs, time_ms=1_700_000_000_000 + height)
            assert settled == height
            say(str(height))
    return 0


def say(line: str) -> None:
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
