"""The operator's money and reading commands against a network of real node processes:
issue, redeem, payout, balance, statement, block, events, as `somnet` subprocesses.

One network serves the module; every test measures balances before and after, so that
the tests do not depend on each other's order.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from node.tx import PAYOUT_LEGS_MAX
from tests.integration.network import Network, ok, running_network, somnet
from tests.integration.waiting import LineReader, stop_process

pytestmark = pytest.mark.network

CB = "nbkr"
BANK, OTHER_BANK = "bank-1", "bank-2"
DEADLINE_S = 60


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    with running_network(tmp_path_factory.mktemp("cli-money"), deadline_s=DEADLINE_S) as net:
        yield net


def home(network: Network, node_id: str) -> Path:
    return network.entries[node_id].home


def table(stdout: str, *, summary_lines: int = 0) -> list[dict[str, str]]:
    """The rows of a printed table, by its header's names. Columns are apart by two or
    more spaces on every line; a cell may hold one space (a time) or be empty."""
    lines = stdout.splitlines()
    lines = lines[: len(lines) - summary_lines]
    width = max(len(line) for line in lines)
    padded = [line.ljust(width) for line in lines]
    blank = [all(line[i] == " " for line in padded) for i in range(width)]
    gap = [blank[i] and (blank[i - 1 : i] == [True] or blank[i + 1 : i + 2] == [True])
           for i in range(width)]  # fmt: skip
    spans: list[tuple[int, int]] = []
    for i in range(width):
        if not gap[i] and (i == 0 or gap[i - 1]):
            spans.append((i, i + 1))
        elif not gap[i]:
            spans[-1] = (spans[-1][0], i + 1)
    names = [padded[0][a:b].strip() for a, b in spans]
    return [dict(zip(names, (line[a:b].strip() for a, b in spans), strict=True))
            for line in padded[1:]]  # fmt: skip


def test_version_is_the_installed_package_version(tmp_path: Path) -> None:
    assert ok(somnet("--version", cwd=tmp_path)).strip() == f"somnet {version('somnet')}"


def test_the_central_bank_issues_and_redeems(network: Network) -> None:
    before = network.balance(CB, BANK)
    issued = somnet("issue", "--home", home(network, CB), "--to", BANK, "--amount", "1000.25",
                    "--reserve-reference", "RES-2024-0001", "--wait", "--json",
                    cwd=network.directory)  # fmt: skip
    result = json.loads(ok(issued))
    assert (result["status"], result["amount_tyiyn"], result["kind"]) == ("final", 100_025, "issue")
    assert result["reserve_reference"] == "RES-2024-0001"
    assert network.balance(CB, BANK) == before + 100_025
    redeemed = somnet("redeem", "--home", home(network, CB), "--from", BANK, "--amount", "0.25",
                      "--reserve-reference", "RES-2024-0002", "--wait",
                      cwd=network.directory)  # fmt: skip
    fields = dict(line.split(None, 1) for line in ok(redeemed).splitlines() if " " in line)
    assert fields["status"].strip() == "final"
    assert fields["amount"].strip() == "0.25"
    assert network.balance(CB, BANK) == before + 100_000


def test_a_bank_cannot_issue(network: Network) -> None:
    before = network.balance(BANK, BANK)
    refused = somnet("issue", "--home", home(network, BANK), "--to", BANK, "--amount", "5",
                     "--reserve-reference", "MINE", "--wait", cwd=network.directory)  # fmt: skip
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert refused.stderr.startswith("somnet issue: NOT_AUTHORIZED: "), refused.stderr
    assert network.balance(BANK, BANK) == before


def test_bad_input_is_refused_before_anything_is_sent(network: Network, tmp_path: Path) -> None:
    # An API that nobody answers: reaching for it would fail UNREACHABLE (exit 1).
    dead = ["--api", "http://127.0.0.1:1"]
    bad_amount = somnet("issue", "--home", home(network, CB), *dead, "--to", BANK, "--amount",
                        "1.001", "--reserve-reference", "R", cwd=tmp_path)  # fmt: skip
    assert bad_amount.returncode == 2, bad_amount.stderr
    assert bad_amount.stderr.startswith("somnet issue: INVALID_INPUT: amount '1.001'")
    reference = "R" * 65
    long_reference = somnet("redeem", "--home", home(network, CB), *dead, "--from", BANK,
                            "--amount", "1", "--reserve-reference", reference,
                            cwd=tmp_path)  # fmt: skip
    assert long_reference.returncode == 2, long_reference.stderr
    assert "reserve reference" in long_reference.stderr
    unreachable = somnet("balance", "--home", home(network, BANK), *dead, cwd=tmp_path)
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("somnet balance: UNREACHABLE: ")


def test_a_payout_of_five_legs_credits_each_exactly(network: Network, tmp_path: Path) -> None:
    legs = {OTHER_BANK: 1250, CB: 1, "val-1": 10, "val-2": 99_999, "val-3": 300}
    lines = ["account,amount_som", *(f"{a},{t // 100}.{t % 100:02d}" for a, t in legs.items())]
    csv_file = tmp_path / "payout.csv"
    csv_file.write_text("\n".join(lines) + "\n")
    accounts = [BANK, *legs]
    before = {a: network.balance(BANK, a) for a in accounts}
    paid = somnet("payout", "--home", home(network, BANK), "--csv", csv_file, "--remittance",
                  "salaries May", "--wait", "--json", cwd=network.directory)  # fmt: skip
    answer = json.loads(ok(paid))
    assert (answer["legs"], answer["amount_tyiyn"]) == (5, sum(legs.values()))
    [tx] = answer["transactions"]
    assert (tx["status"], tx["legs"]) == ("final", 5)
    after = {a: network.balance(BANK, a) for a in accounts}
    assert after == {a: before[a] + legs.get(a, -sum(legs.values())) for a in accounts}
    # The table for people: one row per payout transaction, the amount in som.
    again = somnet("payout", "--home", home(network, BANK), "--csv", csv_file, "--wait",
                   cwd=network.directory)  # fmt: skip
    [row] = table(ok(again), summary_lines=1)
    assert (row["LEGS"], row["AMOUNT"], row["STATUS"]) == ("5", "1015.60", "final")


def test_a_bad_csv_line_is_named_and_nothing_is_sent(network: Network, tmp_path: Path) -> None:
    csv_file = tmp_path / "payout.csv"
    csv_file.write_text("account,amount_som\nbank-2,1.00\nval-1,1.5.0\nval-2,3\n")
    before = network.balance(BANK, BANK)
    dead = ["--api", "http://127.0.0.1:1"]  # reaching for it would fail UNREACHABLE (exit 1)
    for api in (dead, []):
        refused = somnet("payout", "--home", home(network, BANK), *api, "--csv", csv_file,
                         "--wait", cwd=tmp_path)  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.startswith("somnet payout: INVALID_CSV: "), refused.stderr
        assert f"{csv_file}: line 3: amount '1.5.0'" in refused.stderr
        assert refused.stdout == ""
    csv_file.write_text("bank-2,1\nbank-1,2\n")
    self_paid = somnet("payout", "--home", home(network, BANK), *dead, "--csv", csv_file,
                       cwd=tmp_path)  # fmt: skip
    assert self_paid.returncode == 2
    assert "line 2: pays the paying account bank-1" in self_paid.stderr
    csv_file.write_text("bank-2,1\nnobody,2\n")
    unknown = somnet("payout", "--home", home(network, BANK), *dead, "--csv", csv_file,
                     cwd=tmp_path)  # fmt: skip
    assert unknown.returncode == 2
    assert "line 2: no account 'nobody'" in unknown.stderr
    assert network.balance(BANK, BANK) == before


def test_balance_block_and_status_print_tables_and_json(network: Network, tmp_path: Path) -> None:
    bank_home = home(network, BANK)
    balance = network.balance(BANK, BANK)
    [row] = table(ok(somnet("balance", "--home", bank_home, cwd=tmp_path)))
    assert row == {"ACCOUNT": BANK, "BALANCE": f"{balance // 100}.{balance % 100:02d}"}
    assert json.loads(ok(somnet("balance", "--home", bank_home, "--json", cwd=tmp_path))) == {
        "account": BANK,
        "balance": balance,
    }
    forbidden = somnet("balance", "--home", bank_home, OTHER_BANK, cwd=tmp_path)
    assert forbidden.returncode == 1
    assert forbidden.stderr.startswith("somnet balance: FORBIDDEN: "), forbidden.stderr
    block = json.loads(ok(somnet("block", "--home", bank_home, "1", "--json", cwd=tmp_path)))
    assert block == network.block(BANK, 1) | {"tx_hashes": block["tx_hashes"]}
    fields = ok(somnet("block", "--home", bank_home, "1", cwd=tmp_path))
    assert f"block hash     {block['block_hash']}" in fields.splitlines()
    bad = somnet("block", "--home", bank_home, "one", cwd=tmp_path)
    assert (bad.returncode, bad.stderr.split(":")[:2]) == (2, ["somnet block", " INVALID_INPUT"])
    status = json.loads(ok(somnet("status", "--home", bank_home, "--json", cwd=tmp_path)))
    assert status["node_id"] == BANK


def transfer(network: Network, amount: str) -> dict[str, Any]:
    sent = somnet("transfer", "--home", home(network, BANK), "--to", OTHER_BANK, "--amount",
                  amount, "--wait", cwd=network.directory)  # fmt: skip
    result = json.loads(ok(sent))
    assert result["status"] == "final"
    return dict(result)


def test_statement_lists_every_page_with_balances(network: Network, tmp_path: Path) -> None:
    """Needs the paged statement (from_height, to_height, next_from_height, balance_after)."""
    sent = [transfer(network, amount) for amount in ("1.01", "2.02", "3.03")]
    bank_home = home(network, BANK)
    balance = network.balance(BANK, BANK)
    first = json.loads(
        ok(somnet("statement", "--home", bank_home, "--limit", "1", "--json", cwd=tmp_path))
    )
    assert len(first["transactions"]) == 1
    assert first["next_from_height"] is not None
    whole = json.loads(ok(somnet("statement", "--home", bank_home, "--json", cwd=tmp_path)))
    entries = whole["transactions"]
    assert whole["next_from_height"] is None
    heights = [(e["height"], e["index"]) for e in entries]
    assert heights == sorted(heights)
    assert len(set(heights)) == len(heights)  # no page repeats an entry
    hashes = [e["tx_hash"] for e in entries]
    assert [r["tx_hash"] for r in sent] == hashes[-3:]
    assert entries[-1]["balance_after"] == balance  # nothing of bank-1's moved since
    rows = table(ok(somnet("statement", "--home", bank_home, cwd=tmp_path)), summary_lines=1)
    assert [r["TX HASH"] for r in rows] == hashes
    assert [r["DEBIT"] for r in rows[-3:]] == ["1.01", "2.02", "3.03"]
    assert rows[-1]["BALANCE"] == f"{balance // 100}.{balance % 100:02d}"
    assert rows[-1]["COUNTERPARTY"] == OTHER_BANK


def test_block_by_hash(network: Network, tmp_path: Path) -> None:
    """Needs GET /v1/blocks/{height_or_hash}."""
    block = network.block(BANK, 1)
    by_hash = somnet("block", "--home", home(network, BANK), block["block_hash"], "--json",
                     cwd=tmp_path)  # fmt: skip
    assert json.loads(ok(by_hash))["height"] == 1


def test_a_payout_larger_than_one_transaction_is_split(network: Network, tmp_path: Path) -> None:
    """Needs POST /v1/transactions/batch: 2 500 legs become 3 payout transactions."""
    legs = [(OTHER_BANK if i % 2 else "val-1", 1 + i % 7) for i in range(2 * PAYOUT_LEGS_MAX + 500)]
    csv_file = tmp_path / "payout.csv"
    csv_file.write_text("".join(f"{a},0.{t:02d}\n" for a, t in legs))
    accounts = [BANK, OTHER_BANK, "val-1"]
    before = {a: network.balance(BANK, a) for a in accounts}
    paid = somnet("payout", "--home", home(network, BANK), "--csv", csv_file, "--wait", "--json",
                  cwd=network.directory)  # fmt: skip
    answer = json.loads(ok(paid))
    transactions = answer["transactions"]
    assert [t["legs"] for t in transactions] == [PAYOUT_LEGS_MAX, PAYOUT_LEGS_MAX, 500]
    assert {t["status"] for t in transactions} == {"final"}
    assert len({t["uetr"] for t in transactions}) == 3
    total = sum(t for _, t in legs)
    credited = {a: sum(t for b, t in legs if b == a) for a in accounts}
    after = {a: network.balance(BANK, a) for a in accounts}
    assert after == {BANK: before[BANK] - total} | {
        a: before[a] + credited[a] for a in (OTHER_BANK, "val-1")
    }


def test_events_follow_new_blocks_until_ctrl_c(network: Network, tmp_path: Path) -> None:
    """Needs GET /v1/events: one JSON line per block, the caller's own transactions in it."""
    events = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "events", "--home", str(home(network, BANK)),
         "--json"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # As a non-interactive shell starts a background job: with SIGINT ignored. Ctrl-C
        # (SIGINT) must stop it all the same (fresh-clone run 18 started the suite so).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    output = LineReader.of(events)
    try:
        first = json.loads(output.wait_line(lambda line: True, DEADLINE_S, "a first event"))
        result = transfer(network, "4.04")
        mine = output.wait_line(lambda line: result["tx_hash"] in line, DEADLINE_S, "the transfer")
        event = json.loads(mine)
        assert event["height"] == result["height"] > first["height"]
        [tx] = [t for t in event["transactions"] if t["tx_hash"] == result["tx_hash"]]
        assert (tx["kind"], tx["amount"]) == ("transfer", 404)
        heights = [json.loads(line)["height"] for line in output.lines]
        assert heights == list(range(first["height"], event["height"] + 1))  # none skipped
    finally:
        events.send_signal(signal.SIGINT)
        returncode = stop_process(events, timeout_s=30)
        assert events.stderr is not None
        stderr = events.stderr.read()
        events.stderr.close()
    assert returncode == 0, stderr
