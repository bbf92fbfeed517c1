"""`somnet bench network --plot FILE`: a PNG of throughput and latency, second by second.

Written with zlib and struct alone (PNG is a few chunks around deflated rows), so the
benchmark needs no plotting library (matplotlib would bring numpy, pillow and fonts into
every install of the node for one picture). The picture is two panels, one column of
pixels per second of the run:

- top: finalized transfers in that second (blue bars); the warm-up is shaded grey;
- bottom: submit-to-final latency of the transfers final in that second, p50 (green)
  and p99 (red), in ms.

Each panel's full height is written in its top left corner, in digits of a 3x5 pixel
font; the same figures, and what the colours mean, are in the PNG's tEXt chunks.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

from cli.traffic import Progress

__all__ = ["png_bytes", "write_run_plot"]

Color = tuple[int, int, int]
WHITE: Color = (255, 255, 255)
GREY: Color = (225, 225, 225)
AXIS: Color = (0, 0, 0)
BLUE: Color = (40, 90, 200)
GREEN: Color = (30, 150, 60)
RED: Color = (210, 40, 40)
PANEL_HEIGHT = 200
MARGIN = 20
COLUMN_WIDTH_MIN = 2
WIDTH_TARGET = 800
DIGITS = {  # 3x5 pixels, rows top to bottom
    "0": ("111", "101", "101", "101", "111"),
    "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"),
    "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"),
    "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"),
    "7": ("111", "001", "010", "010", "010"),
    "8": ("111", "101", "111", "101", "111"),
    "9": ("111", "101", "111", "001", "111"),
}
DIGIT_SCALE = 2


class Canvas:
    def __init__(self, width: int, height: int) -> None:
        assert width > 0
        assert height > 0
        self.width, self.height = width, height
        self.rows = [bytearray(bytes(WHITE) * width) for _ in range(height)]

    def point(self, x: int, y: int, color: Color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            self.rows[y][3 * x : 3 * x + 3] = bytes(color)

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        for y in range(max(0, y0), min(self.height, y1)):
            for x in range(max(0, x0), min(self.width, x1)):
                self.rows[y][3 * x : 3 * x + 3] = bytes(color)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for step in range(steps + 1):
            x = x0 + (x1 - x0) * step // steps
            y = y0 + (y1 - y0) * step // steps
            self.rect(x, y, x + 2, y + 2, color)

    def number(self, x: int, y: int, value: int, color: Color) -> None:
        for index, char in enumerate(str(value)):
            for row, bits in enumerate(DIGITS[char]):
                for column, bit in enumerate(bits):
                    if bit == "1":
                        left = x + index * 4 * DIGIT_SCALE + column * DIGIT_SCALE
                        top = y + row * DIGIT_SCALE
                        self.rect(left, top, left + DIGIT_SCALE, top + DIGIT_SCALE, color)


def png_bytes(canvas: Canvas, text: dict[str, str]) -> bytes:
    """An 8-bit RGB PNG of the canvas, with `text` as tEXt chunks."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", canvas.width, canvas.height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\0" + bytes(row) for row in canvas.rows)  # filter 0 on every row
    chunks = [chunk(b"IHDR", header)]
    chunks += [chunk(b"tEXt", f"{k}\0{v}".encode("latin-1")) for k, v in text.items()]
    chunks += [chunk(b"IDAT", zlib.compress(raw, 9)), chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def _nice_top(value: float) -> int:
    """A round panel height at or above `value`: 1, 2 or 5 x a power of ten."""
    top = 1
    while top < value:
        for factor in (2, 5 / 2, 2):
            top = int(top * factor)
            if top >= value:
                break
    return top


def write_run_plot(path: Path, seconds: Sequence[Progress], *, warmup_s: float) -> None:
    """Write the run's seconds (cli/traffic.py Progress, one per second) as a PNG."""
    count = max(1, len(seconds))
    column = max(COLUMN_WIDTH_MIN, WIDTH_TARGET // count)
    width = 2 * MARGIN + column * count
    height = 3 * MARGIN + 2 * PANEL_HEIGHT
    canvas = Canvas(width, height)
    rate_top = _nice_top(max((s.final_last_second for s in seconds), default=1))
    latency_top = _nice_top(max((s.latency_ms_p99_last_second for s in seconds), default=1))
    panels = (MARGIN, 2 * MARGIN + PANEL_HEIGHT)  # top edge of each
    warmup_columns = min(count, int(warmup_s))
    for top in panels:
        canvas.rect(MARGIN, top, MARGIN + column * warmup_columns, top + PANEL_HEIGHT, GREY)
    for index, second in enumerate(seconds):
        x = MARGIN + index * column
        bar = round(PANEL_HEIGHT * second.final_last_second / rate_top)
        bottom = panels[0] + PANEL_HEIGHT
        canvas.rect(x, bottom - bar, x + max(1, column - 1), bottom, BLUE)
    for color, value in ((GREEN, "p50"), (RED, "p99")):
        previous: tuple[int, int] | None = None
        for index, second in enumerate(seconds):
            latency = (
                second.latency_ms_p50_last_second
                if value == "p50"
                else second.latency_ms_p99_last_second
            )
            x = MARGIN + index * column + column // 2
            y = panels[1] + PANEL_HEIGHT - round(PANEL_HEIGHT * latency / latency_top)
            if previous is not None:
                canvas.line(previous[0], previous[1], x, y, color)
            previous = (x, y)
    for top in panels:
        canvas.rect(MARGIN - 1, top, MARGIN, top + PANEL_HEIGHT + 1, AXIS)
        canvas.rect(MARGIN - 1, top + PANEL_HEIGHT, width - MARGIN, top + PANEL_HEIGHT + 1, AXIS)
    canvas.number(MARGIN + 4, panels[0] + 4, rate_top, AXIS)
    canvas.number(MARGIN + 4, panels[1] + 4, latency_top, AXIS)
    text = {
        "Title": "somnet bench network: one column per second of the run",
        "Top panel": f"finalized transfers per second (blue), full height {rate_top}/s;"
        " grey: warm-up",
        "Bottom panel": f"latency from due time, p50 green, p99 red, full height {latency_top} ms",
    }
    path.write_bytes(png_bytes(canvas, text))
