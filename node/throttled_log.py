"""Warnings about what peers do, throttled so that a peer cannot fill the disk with them.

A peer decides how often it misbehaves, so a line per fault lets it spend our disk at
the price of its bandwidth (a 300 KB frame of junk once wrote 10 MB of log). Here each
(subject, kind) pair, where the subject is a peer id or a remote address, writes at most
one line per interval; the next line it writes says how many were suppressed meanwhile.
Lines are cut to a bounded length, and the table of pairs is bounded too (the oldest pair
is forgotten first), since remote addresses are chosen by the other side.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass

from node.clock import Clock

__all__ = ["ThrottledLog"]


@dataclass(slots=True)
class _Entry:
    last_ms: int
    suppressed_count: int


class ThrottledLog:
    """One WARNING line per (subject, kind) per interval, with a count of the rest."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        clock: Clock,
        interval_ms: int = 10_000,
        subjects_max: int = 1024,
        line_chars_max: int = 300,
    ) -> None:
        assert interval_ms >= 0
        assert subjects_max >= 1
        assert line_chars_max >= 40
        self._logger = logger
        self._clock = clock
        self.interval_ms = interval_ms
        self.subjects_max = subjects_max
        self.line_chars_max = line_chars_max
        self._entries: collections.OrderedDict[tuple[str, str], _Entry] = collections.OrderedDict()

    def warning(self, subject: str, kind: str, message: str, *args: object) -> bool:
        """Log `message % args` unless (subject, kind) logged within the interval.

        Returns:
            True if a line was written.
        """
        now_ms = self._clock.now_ms()
        entry_key = (subject[:80], kind)
        entry = self._entries.get(entry_key)
        if entry is not None and now_ms - entry.last_ms < self.interval_ms:
            entry.suppressed_count += 1
            return False
        suppressed_count = 0 if entry is None else entry.suppressed_count
        self._entries[entry_key] = _Entry(last_ms=now_ms, suppressed_count=0)
        self._entries.move_to_end(entry_key)
        while len(self._entries) > self.subjects_max:
            self._entries.popitem(last=False)
        if not self._logger.isEnabledFor(logging.WARNING):
            return False
        text = message % args if args else message
        if len(text) > self.line_chars_max:
            text = f"{text[: self.line_chars_max]}... ({len(text)} chars)"
        if suppressed_count:
            text = f"{text} (suppressed={suppressed_count})"
        self._logger.warning("%s", text)
        return True
