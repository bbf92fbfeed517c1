"""`somnet demo` (what `make demo` runs): a real network with traffic, then a clean stop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.network import free_port_range

pytestmark = pytest.mark.network


def test_demo_runs_a_network_with_final_transfers(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--home", str(tmp_path / "devnet"),
         "--duration", "4", "--rate", "20", "--base-port", str(free_port_range(12))],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "ready: sending 20 transfers/s" in completed.stdout
    words = [line.split() for line in completed.stdout.splitlines()]
    summary = {w[0]: w[1] for w in words if len(w) == 2}
    assert int(summary["final"]) > 0
    assert int(summary["refused"]) == 0
    assert int(summary["not_final"]) == 0
