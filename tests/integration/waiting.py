"""Waiting for a condition, always with a deadline and a message that says what for.

Integration tests run real processes on a shared machine, so how long anything takes is
unknown. Rules for every test here:
- Wait for the condition the assertion needs (`wait_for`, `wait_for_async`), never for a
  guessed time: a fixed sleep is too short on a loaded machine and wasted on an idle one.
- Every wait has a deadline, and on timeout it fails with what it awaited and the last
  thing it saw, so the failure explains itself.
- A child's output is read by a thread (`LineReader`), so a wait for a line has a deadline
  too; a plain `readline()` blocks forever if the child hangs without writing.
"""

from __future__ import annotations

import asyncio
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from typing import IO, TypeVar

T = TypeVar("T")

POLL_INTERVAL_S = 0.05
STDERR_TAIL_CHARS = 6_000  # a stack dump of a few threads
"""How often a condition is re-checked: a polling period, not a synchronisation guess."""


def timed_out(timeout_s: float, what: str, last_seen: object) -> AssertionError:
    return AssertionError(
        f"timed out after {timeout_s}s waiting for {what}; last seen: {last_seen}"
    )


def wait_for(
    condition: Callable[[], T],
    timeout_s: float,
    what: str,
    *,
    seen: Callable[[], object] | None = None,
) -> T:
    """Poll `condition` until it returns something truthy, and return that.

    Args:
        condition: checked at once, then every POLL_INTERVAL_S.
        timeout_s: the deadline, from now.
        what: the awaited condition in words, for the failure message.
        seen: what to report as "last seen" on timeout (default: the last result).
    Raises:
        AssertionError: the deadline passed; the message names `what` and the last seen.
    """
    assert timeout_s > 0
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise timed_out(timeout_s, what, seen() if seen is not None else repr(result))
        time.sleep(POLL_INTERVAL_S)


def assert_throughout(invariant: Callable[[], None], duration_s: float) -> None:
    """Check `invariant` (it raises AssertionError) again and again for `duration_s`.

    For a claim that something does not happen, such as "no block without a quorum": no
    condition says "it will never happen", so the test watches for a while. The invariant
    must hold at every moment of a correct run, so the window decides only how long the
    test watches, never whether a correct run passes.
    """
    assert duration_s > 0
    deadline = time.monotonic() + duration_s
    invariant()
    while time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
        invariant()


async def wait_for_async(
    condition: Callable[[], T],
    timeout_s: float,
    what: str,
    *,
    seen: Callable[[], object] | None = None,
) -> T:
    """`wait_for` for state owned by tasks of the running event loop."""
    assert timeout_s > 0
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise timed_out(timeout_s, what, seen() if seen is not None else repr(result))
        await asyncio.sleep(POLL_INTERVAL_S)


async def within(awaitable: Awaitable[T], timeout_s: float, what: str) -> T:
    """Await with a deadline; a timeout fails naming `what` instead of hanging."""
    try:
        return await asyncio.wait_for(awaitable, timeout_s)
    except TimeoutError:
        raise timed_out(timeout_s, what, "nothing") from None


class LineReader:
    """The output lines of a child process, read by a daemon thread into a queue.

    The thread ends at end of file, which comes when the child exits (or is killed), so
    it never outlives the test's process.
    """

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        """Every line taken from the queue so far, in order."""
        self.ended = False
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    @classmethod
    def of(cls, process: subprocess.Popen[str]) -> LineReader:
        assert process.stdout is not None, "start the child with stdout=subprocess.PIPE"
        return cls(process.stdout)

    def _pump(self, stream: IO[str]) -> None:
        with stream:  # closed at the end, or it leaks a ResourceWarning (an error here)
            for line in stream:
                self._queue.put(line)
        self._queue.put(None)

    def _take(self, deadline: float) -> bool:
        """Move one line (or the end) from the queue; False if the deadline passed first."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            line = self._queue.get(timeout=remaining)
        except queue.Empty:
            return False
        if line is None:
            self.ended = True
        else:
            self.lines.append(line)
        return True

    def wait_line(self, match: Callable[[str], bool], timeout_s: float, what: str) -> str:
        """Read lines until one matches, and return it.

        Raises:
            AssertionError: the output ended, or the deadline passed, before a match.
        """
        deadline = time.monotonic() + timeout_s
        while not self.ended:
            if not self._take(deadline):
                raise timed_out(timeout_s, what, self.tail())
            if self.lines and not self.ended and match(self.lines[-1]):
                return self.lines[-1]
        raise AssertionError(f"output ended before {what}; last lines: {self.tail()}")

    def read_to_end(self, timeout_s: float) -> list[str]:
        """Every line up to the end of the output (the child exited), within a deadline."""
        deadline = time.monotonic() + timeout_s
        while not self.ended:
            if not self._take(deadline):
                raise timed_out(timeout_s, "the end of the output", self.tail())
        return self.lines

    def tail(self, count: int = 20) -> str:
        return "".join(self.lines[-count:]) or "(no output)"


def stop_process(process: subprocess.Popen[str] | subprocess.Popen[bytes], timeout_s: float) -> int:
    """Wait for a child to exit. One that does not within `timeout_s` is made to show
    where each of its threads is (SIGABRT: children run with PYTHONFAULTHANDLER set, see
    tests/conftest.py), then killed, and the test fails with that.

    Returns:
        The exit status; a killed child fails the test afterwards, named.
    Raises:
        AssertionError: the child had to be stopped, with its last stderr (its stack
            dump) when the test holds its stderr pipe; else the dump is in its log.
    """
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        where = _last_stderr(process)
        raise AssertionError(
            f"pid {process.pid} did not exit within {timeout_s}s; its stderr ends:\n{where}"
        ) from None


def _last_stderr(process: subprocess.Popen[str] | subprocess.Popen[bytes]) -> str:
    """The end of an exited child's stderr pipe, which is then closed (left open, it
    would fail a later test with a ResourceWarning)."""
    stream = process.stderr
    if stream is None or stream.closed:
        return "(not a pipe of the test's: see the child's log)"
    with stream:
        text = stream.read()
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return text[-STDERR_TAIL_CHARS:] or "(nothing)"
