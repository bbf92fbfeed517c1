"""`somnet run` refuses settings that would fail later, at start, with a distinct status.

Each case is a value that once passed the configuration check and then crashed the node
with a traceback (in the consensus core, in LMDB, in the listener or in the transport).
The node runs as a real process on a validator's home (only validators build the
consensus core), so the exit status and the message are what an operator sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.devnet import init_network
from cli.ports import free_port_range
from node.fatal import FatalReason

pytestmark = pytest.mark.network


def run_node(home: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # cwd is the test's tmp dir, so the installed package runs, not the working copy.
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "run", "--home", str(home)],
        cwd=home.parent, env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "peers", "reason", "message"),
    [
        ({"SOMNET_CONSENSUS_TIMEOUT_PROPOSE_MS": "70000"}, "", FatalReason.CONFIG,
         "consensus.timeout_propose_ms"),
        ({"SOMNET_CONSENSUS_TIMEOUT_VOTE_MS": "0"}, "", FatalReason.CONFIG,
         "consensus.timeout_vote_ms"),
        ({"SOMNET_STORE_MAP_SIZE_BYTES": str(2**64)}, "", FatalReason.CONFIG,
         "store.map_size_bytes"),
        ({"SOMNET_P2P_FRAME_BYTES_MAX": "1000"}, "", FatalReason.CONFIG, "p2p.frame_bytes_max"),
        ({"SOMNET_API_LISTEN": "nowhere.invalid:8080"}, "", FatalReason.CONFIG, "api.listen"),
        ({}, 'id = "ghost"\nurl = "http://127.0.0.1:9"', FatalReason.CONFIG, "'ghost'"),
        ({"SOMNET_NODE_DATA_DIR": "genesis.json"}, "", FatalReason.STORE_ERROR, "genesis.json"),
    ],
)  # fmt: skip
def test_a_setting_that_would_crash_later_stops_the_node_at_start(
    tmp_path: Path, env: dict[str, str], peers: str, reason: FatalReason, message: str
) -> None:
    entries = init_network(
        tmp_path / "net",
        validators=4,
        banks=1,
        chain_id="som-test",
        host="127.0.0.1",
        base_port=free_port_range(10),
    )
    home = next(e.home for e in entries if e.role == "validator")
    if peers:
        with (home / "node.toml").open("a") as toml:
            toml.write(f"\n[[peers]]\n{peers}\n")
    run = run_node(home, env)
    assert run.returncode == reason, run.stderr
    assert "Traceback" not in run.stderr
    assert f"fatal {reason.name}" in run.stderr
    assert message in run.stderr
