"""Log lines: one event per line, key=value or JSON, each naming its node."""

from __future__ import annotations

import json
import logging
import re
import sys

from node.log_format import JsonFormatter, LogfmtFormatter

LOGFMT_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^ "=]+)')


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("node.driver", logging.INFO, __file__, 1, message, args, exc_info)


def parse_logfmt(line: str) -> dict[str, str]:
    """A strict reader: the line must be nothing but key=value pairs."""
    pairs = LOGFMT_PAIR.findall(line)
    assert " ".join(f"{k}={v}" for k, v in pairs) == line
    return {k: v[1:-1] if v.startswith('"') else v for k, v in pairs}


def test_a_logfmt_line_has_the_node_the_logger_and_the_message() -> None:
    line = LogfmtFormatter("bank-a").format(record("h=%d settled txs=%d", 12, 3))
    fields = parse_logfmt(line)
    assert list(fields) == ["ts", "level", "node", "logger", "msg"]
    assert fields["node"] == "bank-a"
    assert fields["level"] == "INFO"
    assert fields["logger"] == "node.driver"
    assert fields["msg"] == "h=12 settled txs=3"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fields["ts"])
    assert 'msg="h=12 settled txs=3"' in line


def test_a_multi_line_message_and_its_traceback_stay_on_one_line() -> None:
    line = LogfmtFormatter("bank-a").format(record('peer said "no"\nsecond line', exc=True))
    assert "\n" not in line
    fields = parse_logfmt(line)
    assert fields["msg"] == 'peer said \\"no\\"\\nsecond line'
    assert "ValueError: bad\\nvalue" in fields["exc"]


def test_a_json_line_parses_as_one_object_with_the_same_fields() -> None:
    line = JsonFormatter("cb").format(record("line one\nline two", exc=True))
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["node"] == "cb"
    assert fields["msg"] == "line one\nline two"
    assert fields["logger"] == "node.driver"
    assert "ValueError: bad\nvalue" in fields["exc"]
