"""A child that will not stop fails the test with where it was stuck, not just its pid."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.waiting import stop_process

STUCK = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
print("ready", flush=True)
def wait_here_for_ever():
    time.sleep(600)
wait_here_for_ever()
"""


def test_a_stuck_child_is_made_to_show_its_stack() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", STUCK], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        with child.stdout as out:  # type: ignore[union-attr]
            assert out.readline() == "ready\n"
            with pytest.raises(AssertionError) as failed:
                stop_process(child, timeout_s=0.5)
    finally:
        if child.poll() is None:  # only if the code under test failed to stop it
            child.kill()
            child.wait()
    message = str(failed.value)
    assert f"pid {child.pid} did not exit within 0.5s" in message
    assert "wait_here_for_ever" in message  # the dump names the function it was in
    assert child.stderr is not None and child.stderr.closed


def test_a_child_that_exits_gives_its_status() -> None:
    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    assert stop_process(child, timeout_s=30) == 3
