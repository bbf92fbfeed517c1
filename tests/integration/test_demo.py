"""`somnet demo` (what `make demo` runs): a real network with traffic, then a clean stop."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli.api_client import ApiError
from cli.devnet import load_network, status_of
from cli.ports import free_port_range
from tests.integration.network import (
    node_processes_reaped,
    node_processes_under,
)
from tests.integration.waiting import LineReader, stop_process

pytestmark = pytest.mark.network


def test_demo_runs_a_network_with_final_transfers(tmp_path: Path) -> None:
    with node_processes_reaped(tmp_path) as leftovers:
        completed = subprocess.run(
            [sys.executable, "-m", "cli.main", "demo", "--home", str(tmp_path / "devnet"),
             "--duration", "4", "--rate", "20", "--base-port", str(free_port_range(12))],
            cwd=tmp_path, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert leftovers == []  # the demo stopped every node it started
    assert "ready: sending 20 transfers/s" in completed.stdout
    words = [line.split() for line in completed.stdout.splitlines()]
    summary = {w[0]: w[1] for w in words if len(w) == 2}
    assert int(summary["final"]) > 0
    assert int(summary["refused"]) == 0
    assert int(summary["not_final"]) == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_demo_stops_its_nodes_on_interrupt_or_terminate(tmp_path: Path, signum: int) -> None:
    with node_processes_reaped(tmp_path) as leftovers:
        demo = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "demo", "--home", str(tmp_path / "devnet"),
             "--base-port", str(free_port_range(12))],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            # As a non-interactive shell starts a background job: with SIGINT ignored.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )  # fmt: skip
        output = LineReader.of(demo)
        try:
            output.wait_line(lambda line: "final=" in line, 120, "the demo's first report")
            assert len(node_processes_under(tmp_path)) == 6  # so `leftovers` can see them
        finally:
            demo.send_signal(signum)
            returncode = stop_process(demo, timeout_s=60)
    output.read_to_end(timeout_s=10)
    assert returncode == 0, output.tail()
    assert leftovers == []  # the demo stopped every node before it exited
    for entry in load_network(tmp_path / "devnet"):
        with pytest.raises(ApiError):  # and nothing else answers on their ports
            status_of(entry)
