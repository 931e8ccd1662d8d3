"""The exporter logs with the shared formatter, ``infrascope_core.logfmt`` (issue 12, point 7).

Run for real: the exporter's own start-up lines (the warning about a secret file others
can read, ``listening``) are one logfmt line each in Prometheus' timestamp format, control
characters escaped (a file name with a tab cannot split or forge a line), secrets never
shown; and the exporter keeps no formatter of its own.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from exporter_testlib import WEBSHOP_TOKEN
from infrascope_core import logfmt

EXPORTER_CLI = Path(sys.executable).parent / "infrascope-exporter"
LINE = re.compile(r'^ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=(debug|info|warn|error)'
                  r' msg=("([^"\\]|\\.)*"|\S+)( [a-z_]+=("([^"\\]|\\.)*"|\S+))*$')


def test_the_exporter_logs_through_infrascope_core_logfmt(tmp_path: Path, served) -> None:
    token_file = tmp_path / "hcloud\ttoken"  # a tab in the name: escaped, not raw
    token_file.write_text(WEBSHOP_TOKEN + "\n")
    token_file.chmod(0o644)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HCLOUD_", "ROBOT_", "INFRASCOPE_"))}
    proc = subprocess.Popen(
        [str(EXPORTER_CLI), "--cloud.token-file", str(token_file), "--cloud.endpoint",
         served.cloud, "--web.listen-address", "127.0.0.1:0", "--no-cloud.metrics",
         "--log.level", "info"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    lines = stderr.splitlines()
    assert lines, "no log lines"
    for text in lines:
        assert LINE.match(text), text
        assert "\t" not in text and "\r" not in text
    warning = next(t for t in lines if "level=warn" in t)
    assert "hcloud\\ttoken" in warning and "chmod 600" in warning
    assert any("msg=listening" in t for t in lines)
    assert WEBSHOP_TOKEN not in stderr
    # the formatter is the shared one
    assert logfmt.LogfmtFormatter.__module__ == "infrascope_core.logfmt"
    assert importlib.util.find_spec("infrascope_exporter.logs") is None
