"""The operator's commands against real processes: devnet, transfer, status, run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.http import ApiError, get_json
from tests.integration.network import free_port_range

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
    base_port = free_port_range(12)
    devnet = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "devnet", "--home", str(home),
         "--base-port", str(base_port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert devnet.stdout is not None
    lines = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = devnet.stdout.readline()
            assert line, "devnet exited before ready: " + "".join(lines)
            lines.append(line)
            if line.strip() == "ready":
                break
        assert any("bank-1" in line and "http://127.0.0.1:" in line for line in lines)
        sent = somnet("transfer", "--home", str(home / "bank-1"), "--to", "bank-2",
                      "--amount", "12.50", "--wait", cwd=tmp_path)  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        result = json.loads(sent.stdout)
        assert (result["status"], result["amount_tyiyn"]) == ("final", 1250)
        api = f"http://127.0.0.1:{base_port + 11}"  # bank-2, the sixth node
        shown = somnet("status", "--api", api, "--json", cwd=tmp_path)
        status = json.loads(shown.stdout.splitlines()[-1])
        assert {"height", "last_block_hash", "app_hash", "role", "peers"} <= set(status)
        assert status["role"] == "bank"
        assert status["height"] >= result["height"]
        assert get_json(f"{api}/v1/accounts/bank-2")["balance"] == 100_000_000_000 + 1250
    finally:
        devnet.send_signal(signal.SIGTERM)
        rest, _ = devnet.communicate(timeout=60)
    assert devnet.returncode == 0
    assert rest.strip().endswith("stopped")
    with pytest.raises(ApiError):
        get_json(f"http://127.0.0.1:{base_port + 1}/v1/status")  # the children are gone


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
