"""The ``recommender`` console script: subprocess smoke tests and in-process command tests.

No Prometheus here: failures use a closed loopback port, successful runs replace the
engine seam (``cli.make_runner``) with hand-built results. Real-Prometheus runs are the
scenario tests' job.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
import service_fixtures as fx

from infrascope_recommender import cli
from infrascope_recommender.config import Config
from infrascope_recommender.state import Store

SCRIPT = "recommender"
MODULE = "infrascope_recommender"
DIST = "infrascope-recommender"
SECRET = "super-secret-token-value-42"


def _installed_script() -> Path | None:
    """The console script pip generated next to this interpreter, if any."""
    for directory in {Path(sysconfig.get_path("scripts")), Path(sys.executable).parent}:
        candidate = directory / SCRIPT
        if candidate.is_file():
            return candidate
    return None


def _invocations() -> list[pytest.ParameterSet]:
    script = _installed_script()
    return [
        pytest.param([sys.executable, "-m", MODULE], id="python-m"),
        pytest.param(
            [str(script)] if script else [],
            id="console-script",
            marks=pytest.mark.skipif(script is None, reason=f"{SCRIPT} not installed"),
        ),
    ]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PROMETHEUS_", "RECOMMENDER_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(cmd: list[str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60,
                          check=False, cwd=cwd, env=_env())


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the with block ends


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recommender.yml"
    path.write_text(text, encoding="utf-8")
    return path


def fast_failing_config(tmp_path: Path) -> tuple[Path, str]:
    """A config pointing at a closed port, no retries, and secrets that must never show."""
    url = f"http://127.0.0.1:{closed_port()}"
    (tmp_path / "prom-token").write_text(SECRET + "-prom")
    (tmp_path / "api-token").write_text(SECRET)
    path = write_config(tmp_path, f"""
prometheus:
  url: {url}
  bearer_token_file: {tmp_path / 'prom-token'}
  retries: 0
  timeout: 5s
state:
  path: {tmp_path / 'state.db'}
api:
  token_file: {tmp_path / 'api-token'}
""")
    return path, url


# --- subprocess --------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", _invocations())
def test_version(cmd: list[str]) -> None:
    result = _run(cmd, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{SCRIPT} 0.1.0"
    assert version(DIST) == "0.1.0"


@pytest.mark.parametrize("cmd", _invocations())
def test_no_command_is_a_usage_error(cmd: list[str]) -> None:
    result = _run(cmd)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "a command is required: run, report, serve or check-config" in result.stderr


@pytest.mark.parametrize(("yaml_text", "key"), [
    ("prometheus:\n  url: ftp://nowhere\n", "prometheus.url"),
    ("prometheus:\n  retries: many\n", "prometheus.retries"),
    ("prometheus:\n  compression: gzip\n", "prometheus.compression"),
    ("bogus: 1\n", "bogus"),
    ("api:\n  token_file: /nonexistent/token\n", "api.token_file"),
    ("schedule:\n  interval: soon\n", "schedule.interval"),
])
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, yaml_text: str, key: str) -> None:
    config = write_config(tmp_path, yaml_text)
    result = _run([sys.executable, "-m", MODULE], "run", "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith(f"{SCRIPT}: {key}")


def test_bad_flags_exit_2(tmp_path: Path) -> None:
    result = _run([sys.executable, "-m", MODULE], "serve", "--listen", "nowhere")
    assert result.returncode == 2 and "api.listen" in result.stderr
    result = _run([sys.executable, "-m", MODULE], "report", "--format", "pdf")
    assert result.returncode == 2 and "--format" in result.stderr
    result = _run([sys.executable, "-m", MODULE], "report", "--from-state", "--state",
                  str(tmp_path / "missing.db"))
    assert result.returncode == 2
    assert "state.path: no state file at" in result.stderr and result.stdout == ""


@pytest.mark.parametrize("command", [["run"], ["report"], ["report", "--format", "json"]])
def test_unreachable_prometheus_exits_3_naming_the_url(tmp_path: Path,
                                                       command: list[str]) -> None:
    config, url = fast_failing_config(tmp_path)
    result = _run([sys.executable, "-m", MODULE], *command, "--config", str(config))
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""  # never an empty "all good" report
    assert url in result.stderr
    assert "refused" in result.stderr.lower()
    assert SECRET not in result.stderr


@pytest.mark.parametrize("log_level", [None, "debug"])
def test_unreachable_prometheus_is_one_summary_line(tmp_path: Path,
                                                    log_level: str | None) -> None:
    """With retries (3, the default), `report` says once what failed, after how many
    attempts and how long — no warning per retry; each attempt is a DEBUG line."""
    url = f"http://127.0.0.1:{closed_port()}"
    config = write_config(tmp_path, f"""
prometheus:
  url: {url}
  retries: 3
  backoff: 200ms
state:
  path: {tmp_path / 'state.db'}
""")
    extra = ["--log-level", log_level] if log_level else []
    started = time.monotonic()
    result = _run([sys.executable, "-m", MODULE], "report", "--config", str(config), *extra)
    elapsed = time.monotonic() - started
    assert result.returncode == 3 and result.stdout == ""
    lines = result.stderr.splitlines()
    summary = (rf"{SCRIPT}: Prometheus at {re.escape(url)}/api/v1/query unreachable after 4 "
               r"attempts over 1\.[4-9] s: connection refused")
    assert re.fullmatch(summary, lines[-1]), result.stderr
    if log_level is None:
        assert len(lines) == 1, result.stderr
    else:
        attempts = lines[:-1]
        assert 4 <= len(attempts) <= 16, result.stderr
        assert all("level=debug" in line and "attempt" in line for line in attempts)
    assert "level=warning" not in result.stderr
    assert elapsed < 10  # the interpreter start and 1.4 s of backoff, not a wave per query


def test_run_records_a_failed_run(tmp_path: Path) -> None:
    config, url = fast_failing_config(tmp_path)
    _run([sys.executable, "-m", MODULE], "run", "--config", str(config))
    with Store(tmp_path / "state.db") as store:
        last = store.last_run()
        assert last is not None and not last.success and url in (last.error or "")


def test_serve_health_readiness_and_clean_sigterm(tmp_path: Path) -> None:
    config, url = fast_failing_config(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", MODULE, "serve", "--config", str(config),
                             "--listen", f"127.0.0.1:{closed_port()}", "--log-level", "debug"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+/)", line)
        assert match, line + (proc.stderr.read() if proc.poll() is not None and proc.stderr
                              else "")
        base = match.group(1)
        assert httpx.get(base + "healthz").status_code == 200
        deadline = time.monotonic() + 30
        while True:  # the first run happens in the background
            ready = httpx.get(base + "readyz")
            if "failed" in ready.json()["detail"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert ready.status_code == 503 and url in ready.json()["detail"]
        assert httpx.post(base + "api/run").status_code == 401
        r = httpx.post(base + "api/run", headers={"Authorization": f"Bearer {SECRET}"})
        assert r.status_code == 503 and url in r.json()["detail"]
        assert "infrascope_recommender_last_run_success 0.0" in httpx.get(
            base + "metrics").text
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert SECRET not in out + err
    assert "level=info" in err and "event=start" in err
    # infrascope_core.logfmt's format, uvicorn's lines included (without its ANSI copy)
    for line in err.splitlines():
        assert re.match(r"^ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=[a-z]+ msg=", line), line
    assert "color_message" not in err


# --- in process (engine replaced by hand-built results) ----------------------------------

@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> fx.Runner:
    runner = fx.Runner(fx.run_result())
    monkeypatch.setattr(cli, "make_runner", lambda config: runner)
    for key in list(os.environ):
        if key.startswith(("PROMETHEUS_", "RECOMMENDER_")):
            monkeypatch.delenv(key)
    return runner


def test_run_prints_one_summary_line(tmp_path: Path, fake_engine: fx.Runner,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.db"
    assert cli.main(["run", "--state-path", str(state)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert out.startswith("recommender: run 1: 5 pending recommendation(s) saving 52.39 "
                          "EUR/month (5 new, 0 stale removed, 0 reopened); 7 servers, "
                          "1 excluded, 14 PromQL queries in 1.2 s; state ")
    with Store(state) as store:
        assert len(store.list(status="pending")) == 5


def test_report_formats_and_output(tmp_path: Path, fake_engine: fx.Runner,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.db"
    assert cli.main(["report", "--state", str(state)]) == 0
    table = capsys.readouterr().out
    assert "Pending: 5 recommendations, saving 52.39 EUR/month" in table
    assert not state.exists()  # a fresh report does not create or write the state
    cli.main(["run", "--state", str(state)])
    with Store(state) as store:
        store.dismiss(fx.idle().id, "DR standby")
    capsys.readouterr()
    assert cli.main(["report", "--state", str(state), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["counts"] == {"pending": 4, "accepted": 0, "dismissed": 1}
    assert data["totals"]["pending_monthly_savings"] == "35.99"
    out_file = tmp_path / "report.html"
    assert cli.main(["report", "--state", str(state), "--format", "html", "--output",
                     str(out_file)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and str(out_file) in captured.err
    html = out_file.read_text()
    assert html.startswith("<!DOCTYPE html>") and "35.99 EUR/month" in html
    assert cli.main(["report", "--state", str(state), "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("# InfraScope recommendations")
    assert cli.main(["report", "--state", str(state), "--output",
                     str(tmp_path / "missing" / "x.txt")]) == 1


def test_report_from_state_needs_no_prometheus(tmp_path: Path, fake_engine: fx.Runner,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.db"
    Store(state).close()
    assert cli.main(["report", "--from-state", "--state", str(state)]) == 1
    assert "holds no successful run yet" in capsys.readouterr().err
    cli.main(["run", "--state", str(state)])
    calls = fake_engine.calls
    capsys.readouterr()
    assert cli.main(["report", "--from-state", "--state", str(state)]) == 0
    assert fake_engine.calls == calls  # the engine was not asked
    out = capsys.readouterr().out
    assert "Fleet: 7 servers, 96.27 EUR/month" in out and "state file" in out


def test_other_failures_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "make_runner",
                        lambda config: fx.Runner(RuntimeError("rule exploded")))
    assert cli.main(["run", "--state", str(tmp_path / "s.db")]) == 1
    assert "rule exploded" in capsys.readouterr().err
    assert cli.main(["report", "--state", str(tmp_path / "s.db")]) == 1
    assert "report failed: rule exploded" in capsys.readouterr().err


def test_unusable_state_file_exits_2(tmp_path: Path, fake_engine: fx.Runner,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "state.db"
    bad.write_bytes(b"not a database" * 200)
    assert cli.main(["run", "--state", str(bad)]) == 2
    assert "state.path" in capsys.readouterr().err


def test_secrets_are_scrubbed_from_logs(tmp_path: Path) -> None:
    config = Config()
    assert cli._secrets(config) == []
    from infrascope_core.logfmt import LogfmtFormatter

    formatter = LogfmtFormatter([SECRET])
    import logging

    record = logging.makeLogRecord({"msg": f"token {SECRET} leaked", "levelno": 20,
                                    "levelname": "INFO", "name": "x"})
    assert SECRET not in formatter.format(record)
