"""`somnet demo` (what `make demo` runs): a real network with traffic, then a clean stop."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.http import ApiError, get_json
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


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_demo_stops_its_nodes_on_interrupt_or_terminate(tmp_path: Path, signum: int) -> None:
    base_port = free_port_range(12)
    demo = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "demo", "--home", str(tmp_path / "devnet"),
         "--base-port", str(base_port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # As a non-interactive shell starts a background job: with SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    assert demo.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "final=" not in demo.stdout.readline():
        pass
    demo.send_signal(signum)
    out, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, out
    with pytest.raises(ApiError):
        get_json(f"http://127.0.0.1:{base_port + 1}/v1/status")  # the nodes are gone
