"""Operations on real node processes: /metrics on its own address, and log lines that
are one event each, key=value or JSON, naming their node."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cli.api_client import ApiError
from cli.ports import free_port_range
from tests.integration.network import Network, dump_logs

pytestmark = pytest.mark.network

LOGFMT_LINE = re.compile(r'ts=\S+ level=[A-Z]+ node=(\S+) logger=\S+ msg="(?:[^"\\]|\\.)*"( .*)?')


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = Network.create(tmp_path, validators=4, banks=1)
    base = free_port_range(len(net.entries))
    for index, entry in enumerate(net.entries.values()):
        config = entry.home / "node.toml"
        text = config.read_text() + f'\n[metrics]\nlisten = "127.0.0.1:{base + index}"\n'
        if index == 0:  # one node logs JSON, the others key=value
            text = text.replace("[node]\n", '[node]\nlog_format = "json"\n', 1)
        config.write_text(text)
    try:
        yield net
    finally:
        codes = net.stop_all()
        assert all(code == 0 for code in codes.values()), (codes, dump_logs(net))


def metrics_url(network: Network, node_id: str) -> str:
    text = (network.entries[node_id].home / "node.toml").read_text()
    listen = re.findall(r'^listen = "(.*)"$', text, re.MULTILINE)[-1]  # [metrics] comes last
    return f"http://{listen}/metrics"


Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: Samples, name: str) -> float:
    [(labels, number)] = samples[name]
    assert labels == {}
    return number


def settled_transfer_shown(network: Network, node_id: str) -> Samples | None:
    samples = scrape(metrics_url(network, node_id))
    shown = value(samples, "somnet_finality_latency_seconds_count") >= 1
    return samples if shown and value(samples, "somnet_peers_connected") >= 1 else None


def test_metrics_show_a_settled_transfer_on_their_own_address(network: Network) -> None:
    network.start()
    [bank] = network.banks
    validator = network.validators[1]
    network.wait_height(list(network.entries), 1)
    tx_hash = network.submit(bank, network.sign_transfer(bank, validator, 100))
    assert network.wait_final(bank, tx_hash)["status"] == "final"

    for node_id in (bank, validator):
        samples = network.wait_for(
            lambda node_id=node_id: settled_transfer_shown(network, node_id),
            30,
            f"{node_id}'s metrics to show the settled transfer",
        )
        assert value(samples, "somnet_height") > 0
        assert value(samples, "somnet_decision_round_count") >= 1
        assert value(samples, "somnet_sync_lag_blocks") >= 0
        assert value(samples, "somnet_mempool_txs") >= 0
        [(info, _)] = samples["somnet_node_info"]
        assert info["node"] == node_id
    # The bank API does not serve them: whoever may scrape need not reach the API.
    with pytest.raises(ApiError) as refused:
        network.call(bank, lambda api: api.call("GET", "/metrics"))
    assert (refused.value.status, refused.value.code) == (404, "NOT_FOUND")


def test_log_lines_are_one_event_each_naming_their_node(network: Network) -> None:
    network.start()
    json_node, *logfmt_nodes = network.entries
    network.wait_height(list(network.entries), 2)
    for node_id in logfmt_nodes:
        lines = network.log(node_id).splitlines()
        assert lines
        for line in lines:
            match = LOGFMT_LINE.fullmatch(line)
            assert match is not None, line
            assert match.group(1) == node_id
    events = [json.loads(line) for line in network.log(json_node).splitlines()]
    assert {event["node"] for event in events} == {json_node}
    # The consensus core's progress, logged by the node at INFO, once per step change.
    steps = [e["msg"] for e in events if e["logger"] == "consensus.replica"]
    assert "h=1 r=0 step=propose" in steps
    assert any(step.startswith("h=2 r=0 step=") for step in steps)
