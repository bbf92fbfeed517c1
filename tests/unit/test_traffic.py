"""The honest counting of cli/traffic.py (issue 12): what is final in the drain is never
in the rate, latency runs from the due time, and the two halves of a transaction (the
worker's report, the block's stamp) join in either order."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from cli.plot import write_run_plot
from cli.traffic import LoadResult, Progress, Tally, percentile


def result_of(tally: Tally) -> LoadResult:
    return LoadResult(
        start=100.0,
        window_start=101.0,
        window_end=103.0,
        drained_at=110.0,
        tally=tally,
        blocks=(),
        seconds=(),
        sign_seconds=0.0,
        client_cpu_s=0.0,
        counter_cpu_s=0.0,
    )


def test_only_transfers_final_inside_the_window_count() -> None:
    tally = Tally()
    tally.on_accepted("warm", 100.5, 1)  # due in the warm-up, final in it
    tally.on_final("warm", 100.8, None)
    tally.on_accepted("in", 101.0, 1)
    tally.on_final("in", 101.5, None)
    tally.on_final("early", 102.2, None)  # the block was seen before the worker's answer
    tally.on_accepted("early", 102.0, 1)
    tally.on_accepted("drain", 102.9, 1)  # due in the window, final in the drain
    tally.on_final("drain", 105.9, None)
    figures = result_of(tally).window_figures()
    assert figures["final"] == 4
    assert figures["final_in_window"] == 2  # "in" and "early"; never "drain"
    assert figures["finalized_tx_per_s"] == 1.0  # 2 in a window of 2 s
    # Latency of what was due in the window, from its due time, the drain's included.
    assert figures["latency_ms_max"] == 3000.0
    assert figures["latency_ms_p50"] == 500.0


def test_the_first_bank_stream_to_show_a_transfer_final_times_it() -> None:
    tally = Tally()
    tally.on_final("both", 102.5, None)  # bank-1's stream
    tally.on_final("both", 103.5, None)  # bank-2's, after the window: not when it was final
    tally.on_accepted("both", 102.0, 1)
    tally.on_final("both", 104.0, None)  # a third sighting after the claim changes nothing
    figures = result_of(tally).window_figures()
    assert (figures["final"], figures["final_in_window"]) == (1, 1)
    assert figures["latency_ms_max"] == 500.0


def test_refusals_and_the_unfinalized_are_counted() -> None:
    tally = Tally()
    tally.on_refused("MALFORMED", 2)
    tally.on_accepted("never", 101.0, 1)
    tally.on_accepted("bounced", 101.0, 1)
    tally.on_final("bounced", 101.2, "INSUFFICIENT_FUNDS")  # settled as refused
    figures = result_of(tally).window_figures()
    assert figures["refused"] == 3
    assert figures["refused_by_code"] == {"INSUFFICIENT_FUNDS": 1, "MALFORMED": 2}
    assert figures["not_final"] == 1
    assert figures["final"] == 0


def test_foreign_final_transactions_are_forgotten() -> None:
    tally = Tally()
    tally.on_final("someone else's", 10.0, None)
    tally.forget_foreign(now=100.0)
    assert tally.final_unclaimed == {}


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([], 0.5) == 0.0


def test_the_plot_is_a_png_of_the_run(tmp_path: Path) -> None:
    seconds = [
        Progress(elapsed_s=s, height=s, submitted=100 * s, final=90 * s, final_last_second=90,
                 refused=0, pending=10, latency_ms_p50_last_second=80.0 + s,
                 latency_ms_p99_last_second=300.0 - s)
        for s in range(1, 8)
    ]  # fmt: skip
    path = tmp_path / "run.png"
    write_run_plot(path, seconds, warmup_s=2)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    start = data.index(b"IDAT") + 4
    length = struct.unpack(">I", data[start - 8 : start - 4])[0]
    rows = zlib.decompress(data[start : start + length])
    assert len(rows) == height * (1 + 3 * width)
