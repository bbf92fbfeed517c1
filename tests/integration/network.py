"""A real local network for tests: `somnet init`, then one OS process per node.

Processes run the installed `somnet` (cwd is the test's tmp dir, so the working copy
never shadows the package), talk over real loopback sockets, and keep real LMDB files.
Timings are shortened through SOMNET_* environment variables, the operators' own knob.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from cli.api_client import ApiClient, ApiError, Credentials, blocking
from cli.devnet import init_network
from cli.entry import NodeEntry
from cli.ports import free_port_range
from node.genesis import load_genesis
from node.keys import load_key_file
from node.tx import sign_transfer
from tests.integration.waiting import stop_process, wait_for

T = TypeVar("T")

FAST = {
    "SOMNET_CONSENSUS_EMPTY_BLOCK_INTERVAL_MS": "200",
    "SOMNET_CONSENSUS_TIMEOUT_PROPOSE_MS": "500",
    "SOMNET_CONSENSUS_TIMEOUT_VOTE_MS": "200",
    "SOMNET_NODE_LOG_LEVEL": "INFO",
}


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

    def stop(self, node_id: str) -> int:
        """Stop one node as an operator does (SIGTERM); returns its exit status."""
        process = self.processes.pop(node_id)
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise

    def kill9(self, node_id: str) -> None:
        process = self.processes.pop(node_id)
        process.send_signal(signal.SIGKILL)
        stop_process(process, timeout_s=30)

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

    def credentials(self, participant_id: str) -> Credentials:
        key = load_key_file(self.entries[participant_id].home / "node_key.json")
        return Credentials(participant_id, key)

    def client(self, node_id: str, *, as_participant: str | None = None) -> ApiClient:
        """A client of the node's API, signing as `as_participant` (default: the central
        bank, which reads every account, so that tests can look anywhere)."""
        return ApiClient(self.api(node_id), self.credentials(as_participant or self.issuer))

    def call(
        self,
        node_id: str,
        request: Callable[[ApiClient], Any],
        *,
        as_participant: str | None = None,
    ) -> Any:
        """One API call, e.g. network.call("bank-a", lambda api: api.account("bank-a"))."""
        return blocking(self.client(node_id, as_participant=as_participant), request)

    @property
    def issuer(self) -> str:
        return self.genesis.issuer.participant_id

    def status(self, node_id: str) -> dict[str, Any]:
        return dict(self.call(node_id, ApiClient.status))

    def height(self, node_id: str) -> int:
        """The node's height, or -1 while its API does not answer (starting, stopped)."""
        try:
            return int(self.status(node_id)["height"])
        except ApiError:
            return -1

    def heights(self, node_ids: list[str]) -> dict[str, int]:
        return {n: self.height(n) for n in node_ids}

    def block(self, node_id: str, height: int) -> dict[str, Any]:
        return dict(self.call(node_id, lambda api: api.block(height)))

    def balance(self, node_id: str, account: str) -> int:
        return int(self.call(node_id, lambda api: api.account(account))["balance"])

    # -- waiting -------------------------------------------------------------------------

    def wait_for(
        self,
        condition: Callable[[], T],
        timeout_s: float,
        what: str,
        *,
        seen: Callable[[], object] | None = None,
    ) -> T:
        """`waiting.wait_for`, failing at once, with its log, if a node process exits."""

        def checked() -> T:
            for node_id, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(
                        f"{node_id} exited {process.returncode} while waiting for {what};"
                        f" its log ends:\n{self.log(node_id)[-3000:]}"
                    )
            return condition()

        return wait_for(checked, timeout_s, what, seen=seen)

    def wait_height(self, node_ids: list[str], height: int, timeout_s: float = 60) -> None:
        self.wait_for(
            lambda: all(h >= height for h in self.heights(node_ids).values()),
            timeout_s,
            f"{node_ids} at height {height} or above",
            seen=lambda: self.heights(node_ids),
        )

    def wait_ready(self, timeout_s: float = 60) -> None:
        """Every node at height 1 or above, and every bank node caught up: before that a
        bank node may not listen yet (a slow start on a busy machine) or answers
        CATCHING_UP until it heard a validator's certified height."""
        self.wait_height(list(self.entries), 1, timeout_s)
        self.wait_for(
            lambda: all(self.status(b)["caught_up"] for b in self.banks),
            timeout_s,
            "every bank node caught up",
        )

    def assert_same_chain(self, node_ids: list[str], height: int) -> None:
        """Blocks 1..height are the same on every node: same hash, same app hash.

        A node that reports a transfer final only knows its own chain; the others may not
        have settled that height yet, so first wait until every node has.
        """
        self.wait_height(node_ids, height)
        for h in range(1, height + 1):
            blocks = [self.block(n, h) for n in node_ids]
            assert len({b["block_hash"] for b in blocks}) == 1, (h, blocks)
            assert len({b["app_hash"] for b in blocks}) == 1, (h, blocks)

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
        result = self.call(node_id, lambda api: api.submit(tx))
        assert result["status"] in ("pending", "final"), result
        return str(result["tx_hash"])

    def tx_status(self, node_id: str, tx_hash: str, wait_ms: int = 0) -> dict[str, Any]:
        return dict(self.call(node_id, lambda api: api.transaction(tx_hash, wait_ms=wait_ms)))

    def wait_final(self, node_id: str, tx_hash: str, timeout_s: float = 60) -> dict[str, Any]:
        """The transaction's status at `node_id` once it is no longer pending."""
        last: list[object] = ["nothing"]

        def settled() -> dict[str, Any] | None:
            try:
                status = self.tx_status(node_id, tx_hash, wait_ms=500)
            except ApiError as exc:
                # 404: not yet known here; 503 CATCHING_UP: this node cannot tell yet.
                if exc.status != 404 and exc.body.get("code") != "CATCHING_UP":
                    raise
                last[0] = exc
                return None
            last[0] = status
            return status if status["status"] != "pending" else None

        return self.wait_for(
            settled, timeout_s, f"{tx_hash} settled at {node_id}", seen=lambda: last[0]
        )

    def evidence_count(self) -> int:
        return sum(
            int(self.status(n)["counters"].get("evidence", 0))
            for n in self.entries
            if self.alive(n)
        )


def node_processes_under(directory: Path) -> list[int]:
    """Pids of running `somnet run --home HOME` processes with HOME inside `directory`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue  # it exited meanwhile
        if "cli.main" in args and "run" in args and "--home" in args[:-1]:
            home = Path(args[args.index("--home") + 1])
            if home.is_relative_to(directory):
                pids.append(int(proc.name))
    return pids


@contextlib.contextmanager
def node_processes_reaped(directory: Path) -> Iterator[list[int]]:
    """On exit, SIGKILL the node processes still running under `directory`, and put their
    pids in the yielded list (empty when the devnet or demo stopped them itself).

    The devnet and the demo start their nodes in a session of their own, so if the test
    has to kill the parent, its nodes would run on and load the machine for later tests.
    """
    leftovers: list[int] = []
    try:
        yield leftovers
    finally:
        for pid in node_processes_under(directory):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            leftovers.append(pid)


def dump_logs(network: Network) -> str:
    return json.dumps({n: network.log(n)[-3000:] for n in network.entries}, indent=1)


@contextlib.contextmanager
def running_network(directory: Path, *, deadline_s: float = 60) -> Iterator[Network]:
    """A started network of 4 validators and 2 banks, both banks caught up at height >= 1;
    every node must stop cleanly (exit 0) at the end."""
    network = Network.create(directory, validators=4, banks=2)
    network.start()
    try:
        network.wait_for(
            lambda: all(
                network.height(n) >= 1 and network.status(n)["caught_up"] for n in network.banks
            ),
            deadline_s,
            "both banks caught up at height >= 1",
        )
        yield network
    finally:
        codes = network.stop_all()
        assert all(code == 0 for code in codes.values()), (codes, dump_logs(network))


def somnet(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed command (run outside the worktree, so the installed package loads)."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *map(str, args)],
        cwd=cwd, env=dict(os.environ), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def ok(done: subprocess.CompletedProcess[str]) -> str:
    """The output of a command that must succeed without a word on stderr."""
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    assert done.stderr == ""
    return done.stdout
