"""The API's limits as an operator sets them (SOMNET_API_* over node.toml [api]), each
enforced by a real node process: 413 for a large body, 429 for a participant's rate and
its long polls, 400 for a page over the maximum; and settings refused at start.

The limits need no consensus, so one bank node runs alone (its peers stay down): its API
answers while it waits for them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.api_client import ApiClient, ApiError
from node.fatal import FatalReason
from node.tx import TX_SIZE_MAX
from tests.integration.network import Network, dump_logs

pytestmark = pytest.mark.network

BODY_BYTES_MAX = TX_SIZE_MAX * 2 + 1024  # the least node.config allows
REQUESTS_PER_S_MAX = 20
PAGE_ITEMS_MAX = 5
LIMITS = {
    "SOMNET_API_BODY_BYTES_MAX": str(BODY_BYTES_MAX),
    "SOMNET_API_REQUESTS_PER_S_MAX": str(REQUESTS_PER_S_MAX),
    "SOMNET_API_WAITS_MAX": "1",
    "SOMNET_API_PAGE_ITEMS_MAX": str(PAGE_ITEMS_MAX),
}
UNKNOWN_TX = "ab" * 32


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Network, str]]:
    network = Network.create(tmp_path_factory.mktemp("limits"), env=LIMITS)
    node = network.banks[0]
    network.start(node)
    try:
        network.wait_for(lambda: network.height(node) >= 0, 60, f"{node}'s API answering")
        yield network, node
    except BaseException:
        print(dump_logs(network))
        raise
    finally:
        network.stop_all()


def test_a_body_over_body_bytes_max_is_413_too_large(bank: tuple[Network, str]) -> None:
    network, node = bank
    with pytest.raises(ApiError) as caught:
        network.call(
            node, lambda api: api.submit(b"\0" * (BODY_BYTES_MAX + 1)), as_participant=node
        )
    assert (caught.value.status, caught.value.code) == (413, "TOO_LARGE")
    # At the limit the body is read and judged (not a transaction: refused otherwise).
    with pytest.raises(ApiError) as caught:
        network.call(node, lambda api: api.submit(b"\0" * BODY_BYTES_MAX), as_participant=node)
    assert caught.value.status not in (401, 413), caught.value.body


def test_over_requests_per_s_max_is_429_rate_limited(bank: tuple[Network, str]) -> None:
    network, node = bank
    caller = network.banks[1]  # a participant of its own: its own rate

    async def burst(api: ApiClient) -> list[tuple[int, str, str | None]]:
        async def one() -> tuple[int, str, str | None]:
            async with await api.request("GET", "/v1/status") as response:
                document = await response.json(content_type=None)
                return (
                    response.status,
                    document.get("code", ""),
                    response.headers.get("Retry-After"),
                )

        return await asyncio.gather(*(one() for _ in range(3 * REQUESTS_PER_S_MAX)))

    answers = network.call(node, burst, as_participant=caller)
    statuses = [status for status, _, _ in answers]
    assert set(statuses) == {200, 429}, answers
    # The burst allowed is one second's worth, plus what refilled while it was sent.
    assert statuses.count(200) < 2 * REQUESTS_PER_S_MAX, statuses
    assert {(code, retry) for status, code, retry in answers if status == 429} == {
        ("RATE_LIMITED", "1")
    }
    # Others are not held back by it.
    assert network.call(node, ApiClient.status, as_participant=node)["node_id"] == node


def test_more_long_polls_than_waits_max_are_429_too_many_waits(bank: tuple[Network, str]) -> None:
    network, node = bank

    async def two_polls(api: ApiClient) -> tuple[str, int]:
        """Two long polls at once: whichever arrives second is refused at once, while
        the other holds the one slot for its 20 s."""
        polls = [asyncio.create_task(api.transaction(UNKNOWN_TX, wait_ms=20_000)) for _ in "ab"]
        done, pending = await asyncio.wait(polls, return_when=asyncio.FIRST_COMPLETED)
        for poll in pending:
            poll.cancel()
        await asyncio.wait(pending)
        assert len(done) == 1 and len(pending) == 1, (done, pending)
        refused = done.pop().exception()
        assert isinstance(refused, ApiError), refused
        return refused.code, refused.status

    assert network.call(node, two_polls, as_participant=node) == ("TOO_MANY_WAITS", 429)


def test_a_page_over_page_items_max_is_400(bank: tuple[Network, str]) -> None:
    network, node = bank
    page = network.call(
        node, lambda api: api.statement(node, limit=PAGE_ITEMS_MAX), as_participant=node
    )
    assert page["account"] == node
    with pytest.raises(ApiError) as caught:
        network.call(
            node, lambda api: api.statement(node, limit=PAGE_ITEMS_MAX + 1), as_participant=node
        )
    assert caught.value.status == 400, caught.value.body
    assert str(PAGE_ITEMS_MAX) in caught.value.body["message"]


def run_node(home: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # cwd is the test's tmp dir, so the installed package runs, not the working copy.
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "run", "--home", str(home)],
        cwd=home.parent, env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_supervisor_id_naming_a_participant_stops_the_node_at_start(tmp_path: Path) -> None:
    """Else the supervisor key would replace the participant's, and sign as it."""
    network = Network.create(tmp_path)
    bank = network.banks[0]
    key_hex = "11" * 32
    run = run_node(network.entries[bank].home, {"SOMNET_API_SUPERVISOR_KEYS": f"{bank}:{key_hex}"})
    assert run.returncode == FatalReason.CONFIG, run.stderr
    assert "Traceback" not in run.stderr
    assert "api.supervisor_keys" in run.stderr and repr(bank) in run.stderr
