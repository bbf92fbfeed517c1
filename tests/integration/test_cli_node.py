"""The operator's commands against real processes: devnet, transfer, status, run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli.api_client import ApiError, blocking, client_for_home
from cli.devnet import load_network, status_of
from cli.entry import NodeEntry
from cli.ports import free_port_range
from tests.integration.network import (
    node_processes_reaped,
    node_processes_under,
)
from tests.integration.waiting import LineReader, stop_process, wait_for

pytestmark = pytest.mark.network


def somnet(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_devnet_transfer_status_and_clean_stop(tmp_path: Path) -> None:
    home = tmp_path / "devnet"
    with node_processes_reaped(tmp_path) as leftovers:
        devnet = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "devnet", "--home", str(home),
             "--base-port", str(free_port_range(12))],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        output = LineReader.of(devnet)
        try:
            output.wait_line(lambda line: line.strip() == "ready", 120, "devnet to print ready")
            assert len(node_processes_under(tmp_path)) == 6  # so `leftovers` can see them
            check_transfer_and_status(tmp_path, home, output.lines)
        finally:
            devnet.send_signal(signal.SIGTERM)
            returncode = stop_process(devnet, timeout_s=60)
    lines = output.read_to_end(timeout_s=10)
    assert returncode == 0, output.tail()
    assert lines[-1].strip() == "stopped"
    assert leftovers == []  # the devnet stopped every node before it printed "stopped"
    for entry in load_network(home):
        with pytest.raises(ApiError):  # and nothing else answers on their ports
            status_of(entry)


def check_transfer_and_status(tmp_path: Path, home: Path, printed: list[str]) -> None:
    assert any("bank-1" in line and "http://127.0.0.1:" in line for line in printed)
    sent = somnet("transfer", "--home", str(home / "bank-1"), "--to", "bank-2",
                  "--amount", "12.50", "--wait", cwd=tmp_path)  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    result = json.loads(sent.stdout)
    assert (result["status"], result["amount_tyiyn"]) == ("final", 1250)
    # Final at bank-1 says nothing of bank-2 yet: wait until bank-2 has that block.
    bank_2 = {e.node_id: e for e in load_network(home)}["bank-2"]
    wait_for(
        lambda: height_at(bank_2) >= result["height"],
        60,
        f"bank-2 at height {result['height']}",
        seen=lambda: height_at(bank_2),
    )
    shown = somnet("status", "--home", str(bank_2.home), "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout.splitlines()[-1])
    assert {"height", "last_block_hash", "app_hash", "role", "peers"} <= set(status)
    assert status["role"] == "bank"
    assert status["height"] >= result["height"]
    client = client_for_home(bank_2.home)
    assert blocking(client, lambda api: api.account("bank-2"))["balance"] == 100_000_000_000 + 1250


def height_at(entry: NodeEntry) -> int:
    try:
        return int(status_of(entry)["height"])
    except ApiError:
        return -1


@pytest.mark.parametrize(
    ("damage", "env", "message"),
    [
        ("api_listen", {}, "api.listen must be host:port"),
        ("", {"SOMNET_MEMPOOL_TXS_MAX": "many"}, "SOMNET_MEMPOOL_TXS_MAX"),
        ("key_mode", {}, "too open"),
        ("genesis", {}, "genesis"),
    ],
)
def test_bad_config_is_refused_at_start_naming_the_field(
    tmp_path: Path, damage: str, env: dict[str, str], message: str
) -> None:
    out = tmp_path / "net"
    assert somnet("init", "--out", str(out), "--base-port", str(free_port_range(12)),
                  cwd=tmp_path).returncode == 0  # fmt: skip
    node = out / "bank-1"
    if damage == "api_listen":
        toml = (node / "node.toml").read_text()
        api = toml.index("[api]")
        (node / "node.toml").write_text(
            toml[:api] + re.sub(r'listen = ".*"', 'listen = "nowhere"', toml[api:], count=1)
        )
    elif damage == "key_mode":
        os.chmod(node / "node_key.json", 0o644)
    elif damage == "genesis":
        (node / "genesis.json").write_text('{"chain_id": "x", "participants": 1.5}')
    run = somnet("run", "--home", str(node), cwd=tmp_path, env=env)
    assert run.returncode == 10, run.stderr  # FatalReason.CONFIG
    assert message in run.stderr
    assert not (node / "data").exists()  # refused before anything was stored
