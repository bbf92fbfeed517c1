"""kill -9 a real writer process at random moments; the store must always reopen whole.

One store directory is reused across all kills: each writer restores the ledger from the
store and continues from its tip. After every kill the test reopens the store and checks:
- the store is at a block boundary: the hash chain and every index agree with the tip
  (Store.open verifies, verify(full=True) re-reads every block), and the tx index holds
  exactly one result per transfer of blocks 1..tip;
- money is conserved: the ledger restored from the store sums to issued minus redeemed;
- no block reported as committed is missing: tip >= the last height the writer printed,
  and at most the one block being committed at the kill is beyond it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from node.bench import CHAIN_ID, make_world
from node.ledger import open_ledger
from node.store import Store
from tests.integration import crash_writer
from tests.integration.waiting import LineReader, stop_process

ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("CRASH_TEST_KILLS", "100"))
START_TIMEOUT_S = 60  # a Python start with its imports; long only on a loaded machine
KILLS_IN_RESTORE_FRACTION = 0.2
BLOCKS_BEFORE_KILL_MAX = 3
JITTER_S_MAX = 0.02  # about one block's signing and commit (~10 ms), so kills land anywhere


@dataclass(frozen=True, slots=True)
class KillPoint:
    """When to kill the writer: `jitter_s` after it printed line number `after_lines`
    (its first line is "opening", its second "ready", then one per committed block)."""

    after_lines: int
    jitter_s: float

    @classmethod
    def draw(cls, rng: random.Random) -> KillPoint:
        if rng.random() < KILLS_IN_RESTORE_FRACTION:
            return cls(after_lines=1, jitter_s=rng.uniform(0, 0.2))  # opening or restoring
        return cls(
            after_lines=2 + rng.randint(0, BLOCKS_BEFORE_KILL_MAX),
            jitter_s=rng.uniform(0, JITTER_S_MAX),
        )


def run_writer_until_killed(store: Path, kill_point: KillPoint, stderr_path: Path) -> list[int]:
    """Start the writer, SIGKILL it at `kill_point`, return the heights it printed."""
    with stderr_path.open("w") as stderr:
        writer = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.crash_writer", str(store)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    output = LineReader.of(writer)
    try:
        # The kill moment is drawn, not guessed: wait for the writer to reach the drawn
        # line, then the jitter picks a moment inside the next stretch of its work.
        for count in range(1, kill_point.after_lines + 1):
            output.wait_line(lambda _: True, START_TIMEOUT_S, f"line {count} of the writer")
        time.sleep(kill_point.jitter_s)
    finally:
        writer.send_signal(signal.SIGKILL)
        returncode = stop_process(writer, timeout_s=30)
    lines = output.read_to_end(timeout_s=30)
    errors = stderr_path.read_text()
    assert returncode in (-signal.SIGKILL, 0), errors
    assert "Traceback" not in errors, errors
    assert lines[:2] == ["opening\n", "ready\n"][: len(lines)], lines
    return [int(line) for line in lines[2:]]


def check_store(store_path: Path, reported: int) -> int:
    world = make_world(crash_writer.ACCOUNTS, seed=7)
    with Store.open(
        store_path, chain_id=CHAIN_ID, map_size_bytes=crash_writer.MAP_SIZE_BYTES
    ) as store:
        tip = store.tip.height
        assert reported <= tip <= reported + 1, (reported, tip)
        store.verify(full=True)
        assert store.entry_counts()["tx_index"] == tip * crash_writer.BLOCK_SIZE
        ledger = open_ledger(world.genesis, store)  # asserts conservation itself; check it here too
        assert ledger.height == tip
        assert sum(ledger.balances.values()) == ledger.issued_total - ledger.redeemed_total
        assert ledger.issued_total == crash_writer.ACCOUNTS * 1_000_000_00
    return tip


@pytest.mark.slow
@pytest.mark.timeout(600)  # 100 writer starts and full store checks, on a loaded machine
def test_store_survives_repeated_kill_9(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CRASH_TEST_SEED", "20240601")))
    store_path = tmp_path / "store"
    reported = 0
    kills_mid_run = 0
    kills_aimed_after_a_commit = 0
    for _ in range(KILLS):
        kill_point = KillPoint.draw(rng)
        kills_aimed_after_a_commit += kill_point.after_lines > 2
        heights = run_writer_until_killed(store_path, kill_point, tmp_path / "stderr")
        if heights:
            assert heights == list(range(reported + 1, heights[-1] + 1))
            kills_mid_run += 1
        tip = check_store(store_path, heights[-1] if heights else reported)
        reported = tip  # an unreported block that made it to disk is still committed
    print(f"kills={KILLS} mid_run={kills_mid_run} final_tip={reported}")
    # Kills landed while blocks were being written, and the chain grew across them.
    assert kills_mid_run >= kills_aimed_after_a_commit > 0, kills_mid_run
    assert reported >= kills_mid_run
