"""Every account id genesis accepts can be read at GET /v1/accounts/{id} of a real node.

Ids use only characters that need no escaping in a URL path (RFC 3986 unreserved), so an
id is its own path segment: no slash to split it, no percent-encoding to disagree on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli.api_client import ApiError, blocking, client_for_home
from cli.devnet import init_network
from cli.ports import free_port_range
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.network

ACCOUNTS = {"bank-1.pay_roll~2": 1_234, "Bank-1.A": 5, "bank-1..x": 6, "b" * 64: 7}


def test_accounts_with_dots_dashes_underscores_and_tildes_are_readable(tmp_path: Path) -> None:
    entries = init_network(
        tmp_path / "net",
        validators=1,
        banks=1,
        chain_id="som-test",
        host="127.0.0.1",
        base_port=free_port_range(4),
    )
    genesis = json.loads((tmp_path / "net" / "genesis.json").read_text())
    genesis["accounts"] += [{"id": a, "owner": "bank-1"} for a in ACCOUNTS]
    genesis["issuance"] += [{"account": a, "amount": n} for a, n in ACCOUNTS.items()]
    for entry in entries:
        (entry.home / "genesis.json").write_text(json.dumps(genesis))
    node = next(e for e in entries if e.role == "issuer")  # the one validator
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "run", "--home", str(node.home)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "SOMNET_NODE_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    try:

        def serving() -> bool:
            assert process.poll() is None, process.communicate()[1]
            try:
                return bool(blocking(client_for_home(node.home), lambda api: api.status()))
            except ApiError:
                return False

        wait_for(serving, 60, "the node's API to answer")
        for account_id, balance in ACCOUNTS.items():
            client = client_for_home(node.home)
            answer = blocking(client, lambda api, a=account_id: api.account(a))
            assert answer == {"account": account_id, "balance": balance}
        with pytest.raises(ApiError, match="NOT_FOUND"):
            # why "/" is not allowed in an id
            blocking(client_for_home(node.home), lambda api: api.account("bank-1/payroll"))
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0
