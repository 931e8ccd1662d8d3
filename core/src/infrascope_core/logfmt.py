"""Structured logs for every component: one logfmt line per event.

The format is Prometheus' own (``ts=2026-12-07T09:48:52.019Z level=info msg="..."
key=value ...``): timestamps in UTC with milliseconds, the level as Prometheus names it
(``debug``, ``info``, ``warn``, ``error``), the message,
then the record's extra fields in the order given. Values with spaces, quotes, ``=`` or
control characters are quoted and escaped, so one event is always one line. Configured
secrets are replaced by ``***`` as a last line of defence (they must not reach a log
call in the first place).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import IO

# Not fields of the event: the record's own attributes, and uvicorn's ``color_message``
# (the message again, with ANSI colour codes).
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}
# Level names as Prometheus and Alertmanager log them (go-kit's: debug, info, warn, error).
_LEVELS = {"WARNING": "warn", "CRITICAL": "error"}
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(value: object) -> str:
    """``value`` as a logfmt value: bare when safe, else quoted with escapes."""
    text = str(value)
    if text and not any(c in ' "=\\' or not c.isprintable() for c in text):
        return text
    out = []
    for c in text:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif not c.isprintable():
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def timestamp(created: float) -> str:
    """RFC 3339 in UTC with milliseconds, as Prometheus and Alertmanager log it."""
    whole = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) \
        + f".{int((created - whole) * 1000):03d}Z"


class LogfmtFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        level = _LEVELS.get(record.levelname, record.levelname.lower())
        parts = [f"ts={timestamp(record.created)}", f"level={level}",
                 f"msg={quote(record.getMessage())}"]
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                parts.append(f"{key}={quote(value)}")
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(f"error={quote(record.exc_info[1])}")
        line = " ".join(parts)
        for secret in self.secrets:
            line = line.replace(secret, "***")
        return line


def setup(logger: str, level: str, secrets: Iterable[str] = (),
          stream: IO[str] | None = None, *, also: Iterable[str] = (),
          quiet: Iterable[str] = ()) -> logging.Logger:
    """Send ``logger``'s records (and its children's) as logfmt to ``stream`` (stderr).

    ``also``: libraries' loggers that log through the same handler at the same level
    (uvicorn's); ``quiet``: loggers that do too, but never below ``warn`` (an HTTP client
    that logs every request at info). None of them propagates to the root logger.
    Returns ``logger``.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(LogfmtFormatter(secrets))
    threshold = logging.getLevelName(level.upper())
    if not isinstance(threshold, int):
        raise ValueError(f"unknown log level {level!r}")
    levels = {logger: threshold} | dict.fromkeys(also, threshold) \
        | dict.fromkeys(quiet, max(logging.WARNING, threshold))
    for name, name_level in levels.items():
        target = logging.getLogger(name)
        target.handlers[:] = [handler]
        target.setLevel(name_level)
        target.propagate = False
    return logging.getLogger(logger)
