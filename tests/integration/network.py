"""A real local network for tests: `somnet init`, then one OS process per node.

Processes run the installed `somnet` (cwd is the test's tmp dir, so the working copy
never shadows the package), talk over real loopback sockets, and keep real LMDB files.
Timings are shortened through SOMNET_* environment variables, the operators' own knob.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.devnet import NodeEntry, init_network
from cli.http import ApiError, get_json, post_bytes
from node.genesis import load_genesis
from node.keys import load_key_file
from node.tx import sign_transfer

FAST = {
    "SOMNET_CONSENSUS_EMPTY_BLOCK_INTERVAL_MS": "200",
    "SOMNET_CONSENSUS_TIMEOUT_PROPOSE_MS": "500",
    "SOMNET_CONSENSUS_TIMEOUT_VOTE_MS": "200",
    "SOMNET_NODE_LOG_LEVEL": "INFO",
}


def free_port_range(count: int) -> int:
    """A base port with `count` consecutive ports free right now."""
    rng = random.Random()
    for _ in range(100):
        # Below Linux's ephemeral range (32768-60999): a port there can be taken by any
        # outbound connection between this check and a node (re)starting on it.
        base = rng.randrange(20_000, 32_000, 2)
        try:
            sockets = []
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free port range")


class Network:
    """Node processes of one test network, addressed by node id."""

    def __init__(self, directory: Path, entries: list[NodeEntry], env: dict[str, str]) -> None:
        self.directory = directory
        self.entries = {e.node_id: e for e in entries}
        self.env = env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.genesis = load_genesis(directory / "genesis.json")

    @classmethod
    def create(
        cls,
        tmp_path: Path,
        *,
        validators: int = 4,
        banks: int = 2,
        env: dict[str, str] | None = None,
    ) -> Network:
        directory = tmp_path / "net"
        count = 2 * (validators + banks)
        entries = init_network(
            directory,
            validators=validators,
            banks=banks,
            chain_id="som-test",
            host="127.0.0.1",
            base_port=free_port_range(count),
        )
        return cls(directory, entries, {**FAST, **(env or {})})

    @property
    def validators(self) -> list[str]:
        return [i for i, e in self.entries.items() if e.role != "bank"]

    @property
    def banks(self) -> list[str]:
        return [i for i, e in self.entries.items() if e.role == "bank"]

    # -- processes ---------------------------------------------------------------------

    def start(self, *node_ids: str) -> None:
        for node_id in node_ids or tuple(self.entries):
            entry = self.entries[node_id]
            with (entry.home / "node.log").open("ab") as log:  # the child keeps its own fd
                self.processes[node_id] = subprocess.Popen(
                    [sys.executable, "-m", "cli.main", "run", "--home", str(entry.home)],
                    cwd=self.directory,
                    env={**os.environ, **self.env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )

    def kill9(self, node_id: str) -> None:
        process = self.processes.pop(node_id)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop_all(self) -> dict[str, int]:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {}
        for node_id, process in self.processes.items():
            try:
                codes[node_id] = process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[node_id] = process.wait()
        self.processes.clear()
        return codes

    def alive(self, node_id: str) -> bool:
        process = self.processes.get(node_id)
        return process is not None and process.poll() is None

    def log(self, node_id: str) -> str:
        return (self.entries[node_id].home / "node.log").read_text(errors="replace")

    # -- API -----------------------------------------------------------------------------

    def api(self, node_id: str) -> str:
        return self.entries[node_id].api_url

    def status(self, node_id: str) -> dict[str, Any]:
        return get_json(f"{self.api(node_id)}/v1/status")

    def height(self, node_id: str) -> int:
        try:
            return int(self.status(node_id)["height"])
        except ApiError:
            return -1

    def block(self, node_id: str, height: int) -> dict[str, Any]:
        return get_json(f"{self.api(node_id)}/v1/blocks/{height}")

    def balance(self, node_id: str, account: str) -> int:
        return int(get_json(f"{self.api(node_id)}/v1/accounts/{account}")["balance"])

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return
            for node_id, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"{node_id} exited {process.returncode}: {what}")
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")

    def wait_height(self, node_ids: list[str], height: int, timeout_s: float = 60) -> None:
        self.wait_for(
            f"{node_ids} at height {height}",
            lambda: all(self.height(n) >= height for n in node_ids),
            timeout_s,
        )

    def sign_transfer(
        self,
        bank: str,
        to: str,
        amount: int,
        *,
        expiry_blocks: int = 5000,
        remittance: str = "test",
    ) -> bytes:
        """A transfer signed with the bank's node key; its remittance sealed (node/tx.py)."""
        home = self.entries[bank].home
        return sign_transfer(
            load_key_file(home / "node_key.json"),
            self.genesis.chain_id,
            signer=bank,
            uetr=uuid.uuid4().bytes,
            expiry_height=max(self.height(bank), 0) + expiry_blocks,
            from_account=bank,
            to_account=to,
            amount=amount,
            remittance=remittance,
            recipients=self.genesis.remittance_keys(bank, [to]) if remittance else None,
        )

    def submit(self, node_id: str, tx: bytes) -> str:
        result = post_bytes(f"{self.api(node_id)}/v1/transactions", tx)
        assert result["status"] in ("pending", "final"), result
        return str(result["tx_hash"])

    def tx_status(self, node_id: str, tx_hash: str, wait_ms: int = 0) -> dict[str, Any]:
        return get_json(f"{self.api(node_id)}/v1/transactions/{tx_hash}?wait_ms={wait_ms}")

    def wait_final(self, node_id: str, tx_hash: str, timeout_s: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                status = self.tx_status(node_id, tx_hash, wait_ms=1000)
            except ApiError as exc:
                if exc.status != 404:  # not yet gossiped to this node
                    raise
                time.sleep(0.1)
                continue
            if status["status"] != "pending":
                return status
        raise AssertionError(f"{tx_hash} not final at {node_id} within {timeout_s}s")

    def evidence_count(self) -> int:
        return sum(
            int(self.status(n)["counters"].get("evidence", 0))
            for n in self.entries
            if self.alive(n)
        )


def dump_logs(network: Network) -> str:
    return json.dumps({n: network.log(n)[-3000:] for n in network.entries}, indent=1)
