"""/metrics: the collector reads the node's own counters at scrape time, in Prometheus's
text format, and its application serves nothing else."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from node.api_server import ApiGuard
from node.errors import TxRefused
from node.histogram import FixedHistogram
from node.intake import Intake
from node.metrics import METRICS_LIMITS, MetricsSources, NodeCollector, build_metrics_app
from node.protocol import SyncBlocks
from tests.unit.ledger_support import transfer
from tests.unit.test_driver import Node, certified_chain, hear, make_node, status_at

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def test_a_fixed_histogram_counts_each_value_in_the_first_bucket_that_holds_it() -> None:
    histogram = FixedHistogram((0, 1, 5))
    histogram.observe_all([0, 1, 2, 5, 6, 100])
    assert histogram.cumulative_counts() == [1, 2, 4, 6]
    assert (histogram.count, histogram.sum) == (6, 114)
    with pytest.raises(AssertionError):
        FixedHistogram((5, 1))


def intake_of(node: Node) -> Intake:
    """A bank node's intake (it holds only its own clients' transactions)."""
    return Intake(
        mempool=node.driver.mempool,
        store=node.store,
        broadcast=lambda payload: None,
        wake=lambda: None,
        caught_up=lambda: True,
        proposes=False,
    )


def sources(node: Node, intake: Intake) -> MetricsSources:
    return MetricsSources(
        node_id="bank-e",
        driver=node.driver,
        intake=intake,
        connected_peers=lambda: ["val-b", "val-c"],
        transport_counters=collections.Counter(handshake_timeout=2, frames_sent=9),
        api_guard=ApiGuard(METRICS_LIMITS),
    )


def scrape(metrics: MetricsSources) -> Samples:
    registry = CollectorRegistry()
    registry.register(NodeCollector(metrics))
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_the_collector_reads_height_latency_rounds_pool_peers_and_refusals(
    tmp_path: Path,
) -> None:
    node = make_node(tmp_path, "bank-e")
    intake = intake_of(node)
    metrics = sources(node, intake)
    settling = node.driver.mempool.add(transfer("bank-e", "bank-e", "bank-f", 5)).tx
    with pytest.raises(TxRefused):
        await intake.submit(b"not a transaction")
    overdraft = transfer("bank-f", "bank-f", "bank-e", 10**9)  # refused in its block
    blocks = certified_chain(2, {1: [settling.raw], 2: [overdraft]})
    hear(node, "val-b", status_at(blocks, 2))

    before = scrape(metrics)
    assert before[("somnet_height", ())] == 0
    assert before[("somnet_sync_lag_blocks", ())] == 2
    assert before[("somnet_mempool_txs", ())] == 1
    assert before[("somnet_mempool_bytes", ())] == len(settling.raw)
    assert before[("somnet_tx_refusals_total", (("code", "MALFORMED"), ("stage", "api")))] == 1

    node.clock.advance(300)  # admitted 300 ms before it settles
    hear(node, "val-b", SyncBlocks(blocks=tuple(blocks)))
    after = scrape(metrics)
    assert after[("somnet_height", ())] == 2
    assert after[("somnet_peer_height_highest", ())] == 2
    assert after[("somnet_sync_lag_blocks", ())] == 0
    assert after[("somnet_mempool_txs", ())] == 0
    latency = "somnet_finality_latency_seconds"
    assert after[(f"{latency}_count", ())] == 1
    assert after[(f"{latency}_sum", ())] == pytest.approx(0.3)
    assert after[(f"{latency}_bucket", (("le", "0.25"),))] == 0
    assert after[(f"{latency}_bucket", (("le", "0.5"),))] == 1
    assert after[("somnet_decision_round_count", ())] == 2  # both heights, in round 0
    assert after[("somnet_decision_round_bucket", (("le", "0.0"),))] == 2
    refused_in_block = (("code", "INSUFFICIENT_FUNDS"), ("stage", "block"))
    assert after[("somnet_tx_refusals_total", refused_in_block)] == 1
    assert after[("somnet_peers_connected", ())] == 2
    handshake = ("somnet_peer_handshake_failures_total", (("reason", "timeout"),))
    assert after[handshake] == 2
    assert after[("somnet_peer_transport_events_total", (("event", "frames_sent"),))] == 9
    assert after[("somnet_node_info", (("node", "bank-e"), ("role", "bank")))] == 1


async def test_the_metrics_app_serves_only_get_metrics(tmp_path: Path) -> None:
    node = make_node(tmp_path, "bank-e")
    intake = intake_of(node)
    async with TestClient(TestServer(build_metrics_app(sources(node, intake)))) as client:
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        assert "somnet_height 0.0" in await response.text()
        assert (await client.get("/v1/status")).status == 404
        assert (await client.post("/metrics")).status == 405


DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_the_grafana_dashboard_asks_for_a_prometheus_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"])
    exprs = dashboard_exprs()
    assert any("histogram_quantile(0.99" in e and "finality_latency" in e for e in exprs)


async def test_the_grafana_dashboard_charts_only_exported_metrics(tmp_path: Path) -> None:
    node = make_node(tmp_path, "bank-e")
    intake = intake_of(node)
    registry = CollectorRegistry()
    registry.register(NodeCollector(sources(node, intake)))
    exported = {
        sample.name
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    } | {"somnet_tx_refusals_total"}  # no refusal yet, so no sample
    charted = {name for e in dashboard_exprs() for name in re.findall(r"somnet_\w+", e)}
    assert charted <= exported, charted - exported
