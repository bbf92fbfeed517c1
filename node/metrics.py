"""GET /metrics in Prometheus text format, on a listen address of its own ([metrics]).

Theory of operation: nothing here runs between scrapes. The node already counts what
an operator watches (the driver's counters and histograms, the transport's and the API
guard's counters, the intake's and the ledger's refusals); `NodeCollector` reads them
when Prometheus asks, on the event loop that owns them, so a scrape sees one consistent
moment and the hot path carries no metrics library. Its own `CollectorRegistry`, not
prometheus_client's global one: the process registers nothing else by import.

The address is not the API's: whoever may scrape metrics need not reach the bank API,
and a scrape never competes with banks for the API's connection limits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from node.api_server import API_GUARD, ApiGuard, ApiLimits
from node.driver import Driver
from node.errors import RefusalCode
from node.histogram import FixedHistogram
from node.intake import Intake

__all__ = ["MetricsSources", "NodeCollector", "build_metrics_app"]

HANDSHAKE_PREFIX = "handshake_"  # node/transport.py counts each handshake failure so
# A few scrapers (Prometheus and a spare, an operator's curl) need a few connections; a
# request is a bodyless GET, so a slow one is cut soon.
METRICS_LIMITS = ApiLimits(
    connections_max=16,
    connections_per_address_max=8,
    header_timeout_ms=10_000,
    body_timeout_ms=1_000,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSources:
    """Where the node keeps what /metrics shows; each is read only at scrape time."""

    node_id: str
    driver: Driver
    intake: Intake
    connected_peers: Callable[[], list[str]]
    transport_counters: Mapping[str, int]
    api_guard: ApiGuard


class NodeCollector(Collector):
    """The node's metrics, named somnet_* with their units last."""

    def __init__(self, sources: MetricsSources) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        sources = self.sources
        driver = sources.driver
        info = GaugeMetricFamily(
            "somnet_node_info", "This node's id and role (always 1).", labels=["node", "role"]
        )
        ledger = sources.driver.ledger
        info.add_metric([sources.node_id, ledger.role_of(sources.node_id)], 1)
        yield info
        yield from self._chain(driver)
        yield _histogram(
            "somnet_finality_latency_seconds",
            "Time from a transaction's admission into this node's mempool to its settlement.",
            driver.finality_latency_ms,
            divisor=1000,
        )
        yield _histogram(
            "somnet_decision_round",
            "The consensus round in which each height settled here was decided (0: at once).",
            driver.decision_rounds,
        )
        yield GaugeMetricFamily(
            "somnet_mempool_txs", "Transactions waiting for a block.", len(driver.mempool)
        )
        yield GaugeMetricFamily(
            "somnet_mempool_bytes",
            "Encoded size of the transactions waiting for a block.",
            driver.mempool.size_bytes,
        )
        yield CounterMetricFamily(
            "somnet_tx_relayed_again",
            "Kept transactions gossiped to the validators again while still waiting.",
            value=sources.intake.relayed_again_count,
        )
        yield from self._peers()
        yield self._refusals()
        yield _counters(
            "somnet_driver_events",
            "Events the driver counted (dropped payloads, refused blocks, sync).",
            "event",
            driver.counters,
        )
        stages = CounterMetricFamily(
            "somnet_block_stage_seconds",
            "Seconds spent settling blocks, by stage (sync decode and validate, apply, store).",
            labels=["stage"],
        )
        for stage, seconds in driver.stage_seconds.items():
            stages.add_metric([stage], seconds)
        yield stages
        if driver.replica is not None:
            yield _counters(
                "somnet_consensus_dropped",
                "Consensus input the replica ignored, by reason.",
                "reason",
                driver.replica.dropped,
            )
        yield from self._api()

    def _chain(self, driver: Driver) -> Iterable[Metric]:
        height = driver.ledger.height
        highest = max(driver.peer_heights.values(), default=height)
        yield GaugeMetricFamily("somnet_height", "Height of the last settled block.", height)
        yield GaugeMetricFamily(
            "somnet_peer_height_highest",
            "The highest height a peer proved (with its certificate) and still claims.",
            highest,
        )
        yield GaugeMetricFamily(
            "somnet_sync_lag_blocks",
            "Blocks this node is behind the highest peer height (0: caught up).",
            max(0, highest - height),
        )
        yield CounterMetricFamily(
            "somnet_evidence_on_chain",
            "Evidence transactions (proofs of equivocation) settled applied since start.",
            value=driver.ledger.evidence_settled,
        )

    def _peers(self) -> Iterable[Metric]:
        sources = self.sources
        yield GaugeMetricFamily(
            "somnet_peers_connected",
            "Peers with a live link in both directions.",
            len(sources.connected_peers()),
        )
        counters = sources.transport_counters
        yield _counters(
            "somnet_peer_handshake_failures",
            "Peer handshakes that failed, inbound and outbound, by reason.",
            "reason",
            {k.removeprefix(HANDSHAKE_PREFIX): v for k, v in counters.items() if _handshake(k)},
        )
        yield _counters(
            "somnet_peer_transport_events",
            "Other events of the peer transport (dropped frames, dial failures, ...).",
            "event",
            {k: v for k, v in counters.items() if not _handshake(k)},
        )

    def _refusals(self) -> Metric:
        sources = self.sources
        family = CounterMetricFamily(
            "somnet_tx_refusals",
            "Transactions refused, by stage (api: a bank's submission; gossip: a peer's; "
            "block: carried by a settled block with a refusal code) and code.",
            labels=["stage", "code"],
        )
        stages: tuple[tuple[str, Mapping[RefusalCode, int] | Mapping[int, int]], ...] = (
            ("api", sources.intake.api_refusals),
            ("gossip", sources.intake.gossip_refusals),
            ("block", sources.driver.ledger.block_refusals),
        )
        for stage, counts in stages:
            for code, count in sorted(counts.items()):
                family.add_metric([stage, RefusalCode(code).name], count)
        return family

    def _api(self) -> Iterable[Metric]:
        counters = self.sources.api_guard.counters()
        yield GaugeMetricFamily(
            "somnet_api_connections", "Open bank API connections.", counters["connections"]
        )
        yield _counters(
            "somnet_api_guard_events",
            "Bank API connections refused over a limit or closed at a deadline.",
            "event",
            {k: v for k, v in counters.items() if k != "connections"},
        )


def _handshake(counter_name: str) -> bool:
    return counter_name.startswith(HANDSHAKE_PREFIX)


def _counters(name: str, documentation: str, label: str, counts: Mapping[str, int]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, count in sorted(counts.items()):
        family.add_metric([key], count)
    return family


def _histogram(
    name: str, documentation: str, histogram: FixedHistogram, *, divisor: int = 1
) -> Metric:
    """A Prometheus histogram of a FixedHistogram, its bounds and sum over `divisor` (the
    node counts integers, milliseconds for instance; Prometheus wants base units)."""
    bounds = [repr(bound / divisor) for bound in histogram.bounds] + ["+Inf"]
    buckets = list(zip(bounds, histogram.cumulative_counts(), strict=True))
    return HistogramMetricFamily(
        name, documentation, buckets=buckets, sum_value=histogram.sum / divisor
    )


def build_metrics_app(sources: MetricsSources) -> web.Application:
    """The /metrics application: GET only, nothing else served; every connection is
    bounded by its own guard (METRICS_LIMITS), apart from the API's."""
    registry = CollectorRegistry()
    registry.register(NodeCollector(sources))

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    guard = ApiGuard(METRICS_LIMITS)
    app = web.Application(client_max_size=1024, middlewares=[guard.middleware()])
    app[API_GUARD] = guard
    app.router.add_get("/metrics", metrics)
    return app
