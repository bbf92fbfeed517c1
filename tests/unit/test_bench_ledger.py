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
    "raw_verify_per_second": int,
    "raw_verify_per_cpu_second": int,
    "entry_per_cpu_second": int,
    "validate_per_cpu_second": int,
    "apply_per_cpu_second": int,
    "store_per_cpu_second": int,
    "store_per_second": int,
    "settle_per_cpu_second": int,
    "settle_per_second": int,
    "end_to_end_per_cpu_second": int,
    "end_to_end_ratio_to_raw_verify": float,
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
    for name in FIELDS:
        if name.endswith("_second"):
            assert result[name] > 0, name
    ratio = result["end_to_end_per_cpu_second"] / result["raw_verify_per_cpu_second"]
    assert abs(result["end_to_end_ratio_to_raw_verify"] - ratio) <= 0.01
    # Stages add up: per-transfer CPU times of the parts sum to the whole (rounding aside).
    settle_us = sum(1e6 / result[f"{p}_per_cpu_second"] for p in ("validate", "apply", "store"))
    assert abs(settle_us - 1e6 / result["settle_per_cpu_second"]) <= 0.01 * settle_us
    whole_us = 1e6 / result["entry_per_cpu_second"] + settle_us
    assert abs(whole_us - 1e6 / result["end_to_end_per_cpu_second"]) <= 0.01 * whole_us
    assert "applied and stored" in done.stdout
    assert "end to end (entry + settle)" in done.stdout


def test_bench_ledger_refuses_bad_arguments() -> None:
    done = run_bench("--accounts", "1", "--transfers", "10")
    assert done.returncode == 2
    assert "--accounts must be in 2.." in done.stderr
    assert done.stdout == ""
