"""`somnet bench catchup` as a user runs it, on a network of real node processes: a test
of the tooling, never of a speed. A small run checks that the figures exist and agree
with each other: every transfer final, the late node at the validators' height, rates
that are the counts over the times, and the node's stage timers present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.ports import free_port_range
from tests.integration.network import somnet

pytestmark = pytest.mark.network


def test_bench_catchup_reports_consistent_figures(tmp_path: Path) -> None:
    done = somnet(
        "bench", "catchup", "--transfers", "600", "--rate", "300", "--accounts", "50",
        "--json", "--base-port", str(free_port_range(12)),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "catching up" in done.stdout  # the summary
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["caught_up"] is True
    assert figures["final"] == figures["transfers"] == 600
    assert figures["submitted"] == figures["final"] + figures["refused"]  # refused: sent anew
    assert figures["not_final"] == 0
    assert figures["load_passes"] >= 1
    assert figures["height_reached"] >= figures["blocks"] >= 1
    total, sync = figures["seconds_total"], figures["seconds_sync"]
    # 600 transfers may be synced before the node's API first answers: then no sync time
    # is left to measure (fresh-clone run 15), and no sync-only rate is given.
    assert 0 <= sync <= total
    assert (figures["transfers_per_s_sync"] is None) == (sync == 0)
    assert figures["seconds_start"] == pytest.approx(total - sync, abs=0.002)
    assert figures["transfers_per_s"] == pytest.approx(600 / total, rel=0.01)
    assert figures["blocks_per_s"] == pytest.approx(figures["blocks"] / total, rel=0.05)
    assert 0 < figures["node_cpu_s_start"] <= figures["node_cpu_s"]
    assert figures["node_peak_rss_mb"] > 0
    stages = figures["stage_seconds"]
    assert set(stages) == {"sync_decode", "sync_validate", "apply", "store"}
    assert all(seconds >= 0 for seconds in stages.values())
    assert stages["apply"] > 0 and stages["store"] > 0
