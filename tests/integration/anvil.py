"""A real local EVM chain for anchoring tests: anvil, from the npm package
@foundry-rs/anvil that `make tools` installs into .tools/ (its native binary, run
directly, so the process these tests pause and stop is anvil itself).

BNB Smart Chain-like: chain id 97, a block every second, `finalized` 2 blocks behind
the head (--slots-in-an-epoch 1). Tests wait for conditions, never for guessed times.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cli.ports import free_port_range
from node.anchor import ANCHOR_TAG, decode_calldata
from tests.integration.waiting import stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]
ANVIL_BINARY = ROOT / ".tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"


def anvil_binary() -> Path:
    path = Path(os.environ.get("SOMNET_TEST_ANVIL", ANVIL_BINARY))
    assert path.exists(), f"{path} is missing: run `make tools` (npm @foundry-rs/anvil)"
    return path


class Anvil:
    def __init__(self, directory: Path, chain_id: int = 97) -> None:
        self.port = free_port_range(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "anvil.log"
        self.chain_id = chain_id
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(anvil_binary()), "--host", "127.0.0.1", "--port", str(self.port),
                 "--chain-id", str(self.chain_id), "--slots-in-an-epoch", "1",
                 "--block-time", "1"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(self.answers, 30, "anvil to answer")

    def answers(self) -> bool:
        try:
            self.rpc("eth_chainId", [])
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            stop_process(self.process, timeout_s=15)

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def rpc(self, method: str, params: list[Any]) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        request = urllib.request.Request(
            self.url, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            document = json.loads(response.read())
        assert "error" not in document, document
        return document["result"]

    def anchors_on_chain(self) -> Counter[int]:
        """How many somnet anchor transactions the chain holds per height, read from
        every block (the proof that no height was anchored twice)."""
        counts: Counter[int] = Counter()
        head = int(self.rpc("eth_blockNumber", []), 16)
        for number in range(head + 1):
            block = self.rpc("eth_getBlockByNumber", [hex(number), True])
            for tx in block["transactions"]:
                data = bytes.fromhex(tx["input"][2:])
                if data.startswith(ANCHOR_TAG):
                    counts[decode_calldata(data).height] += 1
        return counts


class HoldingProxy:
    """A JSON-RPC proxy in front of anvil that can hold eth_sendRawTransaction requests
    (never forwarded, never answered while held): the node has signed and stored the
    transaction, and its send is in flight."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.holding = threading.Event()
        self.held: list[str] = []
        self.release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = json.loads(body)
                if request.get("method") == "eth_sendRawTransaction" and proxy.holding.is_set():
                    proxy.held.append(request["params"][0])
                    proxy.release.wait(60)
                    self.close_connection = True
                    return
                forwarded = urllib.request.Request(
                    proxy.target, data=body, headers={"Content-Type": "application/json"}
                )
                try:
                    with urllib.request.urlopen(forwarded, timeout=30) as response:
                        answer = response.read()
                except OSError:
                    self.send_error(502)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port_range(1)), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
