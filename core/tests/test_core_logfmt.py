"""logfmt: one line per event whatever the values hold, Prometheus' timestamp format,
secrets scrubbed."""

from __future__ import annotations

import io
import logging
import re

import pytest

from infrascope_core.logfmt import quote, setup, timestamp


def test_values_are_bare_or_quoted_and_never_break_the_line() -> None:
    assert quote("plain") == "plain"
    assert quote("") == '""'
    assert quote('a "b"=c') == '"a \\"b\\"=c"'
    assert quote("x\ny\x00z") == '"x\\ny\\u0000z"'
    assert quote("back\\slash") == '"back\\\\slash"'


def test_timestamp_is_rfc3339_utc_with_milliseconds() -> None:
    assert timestamp(1_765_100_932.0195) == "2025-12-07T09:48:52.019Z"


def test_a_record_is_one_line_with_its_fields_and_no_secret() -> None:
    out = io.StringIO()
    log = setup("infrascope_test_logfmt", "info", secrets=["s3cr3t"], stream=out)
    log.info("refresh failed\nfor s3cr3t", extra={"event": "refresh", "detail": "a=b"})
    log.debug("not shown")
    log.warning("careful")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and " level=warn msg=careful" in lines[1]
    assert re.fullmatch(r'ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=info '
                        r'msg="refresh failed\\nfor \*\*\*" event=refresh detail="a=b"',
                        lines[0]), lines[0]
    assert logging.getLogger("infrascope_test_logfmt").propagate is False


def test_libraries_log_through_the_same_handler() -> None:
    out = io.StringIO()
    setup("infrascope_test_app", "debug", secrets=["s3cr3t"], stream=out,
          also=("infrascope_test_server",), quiet=("infrascope_test_client",))
    logging.getLogger("infrascope_test_server").debug(
        "started", extra={"color_message": "\x1b[32mstarted\x1b[0m"})
    logging.getLogger("infrascope_test_client").info("GET /s3cr3t")  # below warn: dropped
    logging.getLogger("infrascope_test_client").warning("GET /s3cr3t failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith("level=debug msg=started")  # uvicorn's colour copy left out
    assert lines[1].endswith('level=warn msg="GET /*** failed"')
    for name in ("infrascope_test_app", "infrascope_test_server", "infrascope_test_client"):
        assert logging.getLogger(name).propagate is False


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        setup("infrascope_test_level", "loud")
