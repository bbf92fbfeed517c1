"""Issue 9, with real processes: a bank's statement after a few transfers, paged by
height range, each line with its counterparty, UETR and running balance."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from cli.api_client import ApiClient, ApiError
from tests.integration.network import Network, dump_logs

pytestmark = pytest.mark.network


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = Network.create(tmp_path, validators=1, banks=2)
    try:
        yield net
    finally:
        codes = net.stop_all()
        assert all(code == 0 for code in codes.values()), (codes, dump_logs(net))


def pay(network: Network, bank: str, to: str, amount: int) -> dict[str, Any]:
    """A transfer through the paying bank's own node, once final there."""
    tx_hash = network.submit(bank, network.sign_transfer(bank, to, amount))
    status = network.wait_final(bank, tx_hash)
    assert status["status"] == "final", status
    return status


async def statement_page(account: str, query: dict[str, int], api: ApiClient) -> Any:
    return await api.statement(account, **query)


def whole_statement(network: Network, node: str, account: str, limit: int) -> list[Any]:
    """Every line of the account's statement, page by page, read as the account's owner."""
    lines: list[Any] = []
    query: dict[str, int] = {"from_height": 1, "limit": limit}
    for _ in range(100):  # a bound: pages that never end are a bug
        page = network.call(node, partial(statement_page, account, query), as_participant=account)
        lines += page["transactions"]
        if page["next_from_height"] is None:
            return lines
        query = {
            "from_height": page["next_from_height"],
            "from_index": page["next_from_index"],
            "to_height": page["to_height"],  # the same range: later blocks wait
            "limit": limit,
        }
    raise AssertionError("the pages never ended")


def test_a_banks_statement_shows_its_running_balance(network: Network) -> None:
    bank_1, bank_2 = network.banks
    network.start()
    network.wait_ready()
    opening = network.balance(bank_1, bank_1)
    sent = [pay(network, bank_1, bank_2, 100), pay(network, bank_2, bank_1, 30)]
    sent.append(pay(network, bank_1, bank_2, 5))
    network.wait_height([bank_1], max(int(s["height"]) for s in sent))

    lines = whole_statement(network, bank_1, bank_1, limit=2)
    assert [line["tx_hash"] for line in lines] == [s["tx_hash"] for s in sent]
    assert [(line["direction"], line["amount"]) for line in lines] == [
        ("debit", 100),
        ("credit", 30),
        ("debit", 5),
    ]
    assert [line["balance_after"] for line in lines] == [
        opening - 100,
        opening - 70,
        opening - 75,
    ]
    assert network.balance(bank_1, bank_1) == opening - 75
    first = lines[0]
    assert first | {"kind": "transfer", "status": "final", "signer": bank_1} == first
    assert (first["from_account"], first["to_account"]) == (bank_1, bank_2)
    assert first["remittance_status"] == "opened"  # bank-1's node, bank-1's payment
    assert len(first["uetr"]) == 36
    assert [(line["height"], line["index"]) for line in lines] == [
        (int(s["height"]), int(s["index"])) for s in sent
    ]
    # One page holds the same lines; another bank may not read them.
    one_page = network.call(bank_1, lambda api: api.statement(bank_1, limit=1000))
    assert one_page["transactions"] == lines
    with pytest.raises(ApiError) as refused:
        network.call(bank_1, lambda api: api.statement(bank_1), as_participant=bank_2)
    assert (refused.value.status, refused.value.code) == (403, "FORBIDDEN")
