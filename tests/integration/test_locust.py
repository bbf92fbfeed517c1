"""deploy/locustfile.py against real node processes: a short headless Locust run (a real
`locust` subprocess) sends pre-signed transfers (remittances sealed, as a bank's are) in
batches, reports each one's finality as a FINAL request, and the node's balances moved
by exactly the transfers reported final. Locust's figures are read from its JSON and CSV
output; no speed is asserted."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.network import Network, dump_logs

pytestmark = pytest.mark.network

LOCUSTFILE = Path(__file__).resolve().parents[2] / "deploy" / "locustfile.py"
BATCH_SIZE = 20
DEADLINE_S = 60.0


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = Network.create(tmp_path, validators=1, banks=2)
    try:
        yield net
    finally:
        codes = net.stop_all()
        assert all(code == 0 for code in codes.values()), (codes, dump_logs(net))


def locust_entries(json_prefix: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Locust's final statistics by (type, name). From its JSON file, written from the
    final figures at exit; its CSV files are rewritten once a second while it runs, and
    the last second before the exit may be missing from them."""
    entries = json.loads(Path(f"{json_prefix}.json").read_text())
    return {(entry["method"], entry["name"]): entry for entry in entries}


def csv_types(csv_prefix: Path) -> set[str]:
    with Path(f"{csv_prefix}_stats.csv").open(newline="") as file:
        return {row["Type"] for row in csv.DictReader(file)}


def test_a_headless_locust_run_sends_batches_and_reports_their_finality(
    network: Network, tmp_path: Path
) -> None:
    network.start()
    bank, other = network.banks
    network.wait_for(
        lambda: network.height(bank) >= 1 and bool(network.status(bank)["caught_up"]),
        DEADLINE_S,
        f"{bank} caught up at height >= 1",
    )
    before = {account: network.balance(bank, account) for account in (bank, other)}
    csv_prefix = tmp_path / "locust"
    json_prefix = tmp_path / "locust_stats"
    # --stop-timeout: each user sees its last batch settle before the run ends, so that
    # every transfer sent is counted, FINAL or failed.
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE),
        "--headless", "-u", "2", "-r", "2", "--run-time", "5s", "--stop-timeout", "20",
        "--only-summary", "--csv", str(csv_prefix), "--json-file", str(json_prefix),
        "--host", network.api(bank),
        "--somnet-home", str(network.entries[bank].home),
        "--somnet-to", other,
        "--somnet-batch-size", str(BATCH_SIZE),
        "--somnet-final-timeout", "20",
        "--somnet-batches-per-user", "25", "--somnet-remittance", "locust test",
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, (done.stdout, done.stderr[-5000:])

    entries = locust_entries(json_prefix)
    posts = entries["POST", "/v1/transactions/batch"]
    finals = entries["FINAL", "transfer"]
    sent = posts["num_requests"] * BATCH_SIZE
    assert posts["num_requests"] > 0
    assert posts["num_failures"] == 0, done.stderr[-5000:]
    assert finals["num_failures"] == 0, done.stderr[-5000:]
    assert finals["num_requests"] == sent, (posts, finals, done.stderr[-5000:])
    assert {"POST", "FINAL"} <= csv_types(csv_prefix)
    # Final on the node: the bank's own node saw each block it reported, so the balances
    # already hold every transfer (1 tyiyn each), and nothing else moved them.
    assert network.balance(bank, other) == before[other] + sent
    assert network.balance(bank, bank) == before[bank] - sent
