"""Log lines an operator's tools can parse: one event per line, each naming its node.

Two formats, chosen by [node] log_format:
- "logfmt": `ts=2024-05-01T09:30:00.123Z level=INFO node=bank-a logger=node.driver
  msg="h=12 settled txs=3 hash=..."`. A value with a space, a quote, an equals sign or a
  control character is quoted, with `\\"`, `\\\\` and `\\n` escaped, so a multi-line message
  (a traceback, a peer's error text) never splits an event over lines.
- "json": the same fields as one JSON object per line.

The messages themselves stay what the modules log (key=value text with lazy `%`
arguments, STYLE §8); only their framing is decided here.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys

__all__ = ["JsonFormatter", "LogfmtFormatter", "configure_logging", "formatter_for"]


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fields(
    record: logging.LogRecord, node_id: str, formatter: logging.Formatter
) -> dict[str, str]:
    """The fields of one event in their order; the traceback, if any, as one more field."""
    fields = {
        "ts": _timestamp(record),
        "level": record.levelname,
        "node": node_id,
        "logger": record.name,
        "msg": record.getMessage(),
    }
    if record.exc_info:
        fields["exc"] = formatter.formatException(record.exc_info)
    return fields


def _logfmt_value(value: str, *, quoted: bool = False) -> str:
    if not quoted and value and all(c.isprintable() and c not in ' "=\\' for c in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    # Any other control character would still break a line-based reader.
    escaped = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in escaped)
    return f'"{escaped}"'


class LogfmtFormatter(logging.Formatter):
    """key=value, one line per event; the message is always quoted, so it reads as one."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record, self.node_id, self)
        return " ".join(
            f"{key}={_logfmt_value(value, quoted=key == 'msg')}" for key, value in fields.items()
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line (json.dumps escapes every control character)."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        line = json.dumps(_fields(record, self.node_id, self), ensure_ascii=False)
        assert "\n" not in line
        return line


def formatter_for(log_format: str, node_id: str) -> logging.Formatter:
    """The formatter of a [node] log_format value that load_config accepted."""
    if log_format == "json":
        return JsonFormatter(node_id)
    assert log_format == "logfmt", log_format
    return LogfmtFormatter(node_id)


def configure_logging(*, node_id: str, log_format: str, level: str) -> None:
    """Send every log record to stderr, one line each, replacing any handler set before
    (the command line's, which could not yet know the node id)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter_for(log_format, node_id))
    root = logging.getLogger()
    for previous in list(root.handlers):
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(level)
