"""`somnet bench network`, `somnet bench payout` and `somnet load` as a user runs them,
on networks of real node processes: a test of the tooling, never of a speed. Each run is
short (a few seconds of load) and checks that the figures exist and agree with each
other: finalized per second is what was final in the window over its length, the ratio
is that over the ceiling, and nothing was refused or left unfinalized."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli.ports import free_port_range
from tests.integration.network import Network, somnet

pytestmark = pytest.mark.network

REQUIRED = (
    "finalized_tx_per_s",
    "ceiling_tx_per_s",
    "ratio_to_ceiling",
    "latency_ms_p50",
    "latency_ms_p99",
    "refused",
)


def last_json(stdout: str) -> dict[str, Any]:
    document = json.loads(stdout.strip().splitlines()[-1])
    assert isinstance(document, dict)
    return document


def test_bench_network_reports_consistent_figures(tmp_path: Path) -> None:
    done = somnet(
        "bench", "network", "--validators", "4", "--banks", "1", "--duration", "3",
        "--warmup", "1", "--rate", "100", "--accounts", "50", "--json",
        "--base-port", str(free_port_range(10)), "--plot", tmp_path / "run.png",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "t=    1s" in done.stderr  # a progress line every second
    assert "finalized in window" in done.stdout  # the summary table
    figures = last_json(done.stdout)
    for name in REQUIRED:
        assert name in figures, name
    assert figures["refused"] == 0
    assert figures["not_final"] == 0
    assert figures["final_in_window"] > 0
    assert figures["finalized_tx_per_s"] == pytest.approx(
        figures["final_in_window"] / figures["window_s"], abs=0.1
    )
    assert figures["ceiling_tx_per_s"] > 0
    assert figures["ratio_to_ceiling"] == pytest.approx(
        figures["finalized_tx_per_s"] / figures["ceiling_tx_per_s"], abs=1e-4
    )
    assert figures["signature_checks_per_transfer"] == 5  # every node checks each transfer
    # Latency runs from the due time, so it is at least zero and ordered.
    assert 0 <= figures["latency_ms_p50"] <= figures["latency_ms_p99"]
    assert figures["latency_ms_p99"] <= figures["latency_ms_max"]
    # No more final in the window than was submitted at all.
    assert figures["final_in_window"] <= figures["final"] <= figures["submitted"]
    assert figures["blocks_in_window"] > 0
    assert figures["blocks_per_s"] == pytest.approx(
        figures["blocks_in_window"] / figures["window_s"], abs=0.01
    )
    assert figures["raw_verify_per_cpu_second"] > 0
    assert figures["raw_verify_per_cpu_second_one_core"] > 0
    assert figures["rounds_per_height"] >= 1
    assert set(figures["nodes"]) == {"nbkr", "val-1", "val-2", "val-3", "bank-1"}
    assert all(n["cpu_s_window"] > 0 and n["peak_rss_mb"] > 0 for n in figures["nodes"].values())
    assert (tmp_path / "run.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_bench_network_with_a_validator_down(tmp_path: Path) -> None:
    """`--down 1` kills one validator once the network is ready: three carry the load,
    the dead one is neither measured nor counted among the signature checks."""
    done = somnet(
        "bench", "network", "--validators", "4", "--down", "1", "--duration", "2",
        "--warmup", "2", "--rate", "50", "--accounts", "50", "--json",
        "--base-port", str(free_port_range(10)),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "val-3 stopped (SIGKILL)" in done.stderr
    figures = last_json(done.stdout)
    assert set(figures["nodes"]) == {"nbkr", "val-1", "val-2", "bank-1"}
    assert figures["signature_checks_per_transfer"] == 4
    assert figures["refused"] == 0
    assert figures["not_final"] == 0
    assert figures["final_in_window"] > 0


@pytest.mark.parametrize("extra", [["--down", "2"], ["--down", "1", "--home", "x"]])
def test_bench_network_refuses_more_down_than_tolerated(tmp_path: Path, extra: list[str]) -> None:
    done = somnet("bench", "network", "--validators", "4", *extra, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "tolerates 1 down" in done.stderr
    assert not list(tmp_path.iterdir())  # nothing started, nothing written


def test_bench_payout_settles_every_leg(tmp_path: Path) -> None:
    done = somnet(
        "bench", "payout", "--legs", "3000", "--legs-per-tx", "500", "--accounts", "200",
        "--json", "--base-port", str(free_port_range(10)),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout, done.stderr)
    figures = last_json(done.stdout)
    assert figures["legs"] == figures["legs_final"] == 3000
    assert figures["payouts"] == figures["payouts_final"] == 6
    assert figures["refused"] == 0
    assert figures["not_final"] == 0
    assert figures["seconds_to_last_final"] > 0
    assert figures["legs_settled_per_s"] == pytest.approx(
        3000 / figures["seconds_to_last_final"], rel=0.01
    )


def test_load_against_a_running_network(tmp_path: Path) -> None:
    """One validator and one bank: the smallest running network, quick to start."""
    network = Network.create(tmp_path, validators=1, banks=1)
    network.start()
    try:
        network.wait_for(
            lambda: network.height("bank-1") >= 1 and network.status("bank-1")["caught_up"],
            60,
            "the bank caught up at height >= 1",
        )
        done = somnet(
            "load", "--home", network.directory, "--rate", "40", "--duration", "2",
            "--warmup", "1", "--json",
            cwd=tmp_path,
        )  # fmt: skip
    finally:
        codes = network.stop_all()
    assert codes == {"nbkr": 0, "bank-1": 0}, codes
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "t=    1s" in done.stderr  # with --json, the progress lines go to stderr
    figures = last_json(done.stdout)
    assert figures["refused"] == 0
    assert figures["not_final"] == 0
    assert figures["final_in_window"] > 0
    assert figures["finalized_tx_per_s"] == pytest.approx(
        figures["final_in_window"] / figures["window_s"], abs=0.1
    )
