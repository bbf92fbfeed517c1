"""`somnet bench ledger` runs end to end on a tiny world and reports its figures as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {
    "accounts": int,
    "transfers": int,
    "block_size": int,
    "blocks": int,
    "sign_seconds": float,
    "verify_per_second": int,
    "raw_verify_per_second": int,
    "apply_per_second": int,
    "store_per_second": int,
    "applied_and_stored_per_second": int,
    "store_bytes": int,
}


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "bench", "ledger", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bench_ledger_json_shape() -> None:
    done = run_bench("--accounts", "50", "--transfers", "230", "--block-size", "100", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) == set(FIELDS)
    for name, kind in FIELDS.items():
        assert isinstance(result[name], kind), name
    assert (result["accounts"], result["transfers"], result["block_size"]) == (50, 230, 100)
    assert result["blocks"] == 3
    assert result["store_bytes"] > 230 * 100  # every transfer was written
    for name in ("verify_per_second", "raw_verify_per_second", "applied_and_stored_per_second"):
        assert result[name] > 0


def test_bench_ledger_refuses_bad_arguments() -> None:
    done = run_bench("--accounts", "1", "--transfers", "10")
    assert done.returncode == 2
    assert "--accounts must be in 2.." in done.stderr
    assert done.stdout == ""
