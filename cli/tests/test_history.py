"""``infrascope history load`` on real components: the Hetzner API simulator serving the
demo fleet, the real exporter backfill, promtool and Prometheus.

Two days of history keep the tests short; the steps are the ones of 30 days.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infrascope_cli import history
from infrascope_cli.main import main
from infrascope_core.prometheus import Prometheus, binaries_available, free_port, wait_until

pytestmark = [pytest.mark.skipif(not binaries_available(),
                                 reason="prometheus/promtool not installed (make apt-deps)"),
              pytest.mark.timeout(600)]

BIN = Path(sys.executable).parent
DAYS = 2
CLOUD_SERVERS = 16  # the demo fleet's Cloud servers (each has Cloud metrics history)
INSTANCE = "127.0.0.1:8790"


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("sim")
    port = free_port()
    log = open(work / "sim.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([str(BIN / "infrascope-sim"), "serve", "--fleet", "demo",
                             "--listen", f"127.0.0.1:{port}"], stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_until(up, 30, "the simulator")
        config = work / "exporter.yml"
        config.write_text(subprocess.run(
            [str(BIN / "infrascope-sim"), "exporter-config", "--fleet", "demo", "--base-url",
             url], capture_output=True, text=True, check=True).stdout)
        config.chmod(0o600)
        yield {"url": url, "config": config}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def sim_requests(url: str) -> int:
    with urllib.request.urlopen(url + "/_sim/stats", timeout=5) as r:
        stats = json.loads(r.read())
    return int(sum(v for k, v in flatten(stats) if "metrics" in k))


def flatten(value: Any, key: str = "") -> Iterator[tuple[str, int]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from flatten(v, f"{key}/{k}")
    elif isinstance(value, int) and not isinstance(value, bool):
        yield key, value


def load_args(sim: dict[str, Any], data: Path, *extra: str) -> list[str]:
    return ["history", "load", "--exporter.config-file", str(sim["config"]),
            "--exporter.instance", INSTANCE, "--data-dir", str(data), "--days", str(DAYS),
            "--progress", "lines", *extra]


def hourly_series(prom: Prometheus, start: int, end: int) -> dict[str, int]:
    """Hourly CPU averages per Cloud server: samples in the range."""
    result = prom.query(f"count_over_time(source_server_id:cpu_utilisation:avg1h"
                        f"{{source=\"cloud\"}}[{end - start}s])", at=end)
    return {r["metric"]["server_id"]: int(float(r["value"][1])) for r in result}


def blocks(data: Path) -> list[str]:
    return sorted(p.name for p in data.iterdir() if (p / "meta.json").is_file())


def test_load_into_a_stopped_prometheus(simulator: dict[str, Any], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    assert main(load_args(simulator, data)) == 0
    out, err = capsys.readouterr()
    assert "history loaded into" in out
    assert "history: [" in err and "\r" not in err  # plain lines off a terminal
    state = json.loads((tmp_path / "infrascope-history" / "state.json").read_text())
    start, end = state["start"], state["end"]
    assert end - start == DAYS * 86_400 and end <= time.time() - 3 * 3600
    with Prometheus(data, workdir=tmp_path / "check", retention="60d") as prom:
        hourly = hourly_series(prom, start, end)
        # Every Cloud server, an hourly average for every whole hour of the range.
        assert len(hourly) == CLOUD_SERVERS
        assert set(hourly.values()) <= {DAYS * 24 - 1, DAYS * 24}, hourly
        # Backfilled series carry the exporter target's labels: one series with the live.
        info = prom.query("hetzner_server_info", at=end)
        assert {r["metric"]["instance"] for r in info} == {INSTANCE}


def test_dry_run_prints_the_plan_and_changes_nothing(simulator: dict[str, Any],
                                                     tmp_path: Path,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    before = sim_requests(simulator["url"])
    assert main(load_args(simulator, data, "--dry-run")) == 0
    out = capfd.readouterr().out
    # pass 1: the per-server inputs and the hourly rules (they read the raw inputs);
    # pass 2: the per-minute ratios that read pass 1's records
    assert "history load plan:" in out and "rule pass 2:" in out and "rule pass 3" not in out
    assert f"{DAYS * CLOUD_SERVERS} metrics requests" in out  # one 500-point request a day
    assert list(data.iterdir()) == [] and not (tmp_path / "infrascope-history").exists()
    assert sim_requests(simulator["url"]) == before  # no metrics fetched


def test_an_interrupted_load_resumes_without_refetching_or_duplicating(
        simulator: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    real = history.rules_to_blocks
    calls = {"n": 0}

    def fail_in_pass_2(rule_file: Path, out: Path, *args: Any, **kwargs: Any) -> list[Path]:
        if rule_file.parent.name == "pass-2":
            calls["n"] += 1
            raise history.HistoryError("interrupted (test)")
        return real(rule_file, out, *args, **kwargs)

    monkeypatch.setattr(history, "rules_to_blocks", fail_in_pass_2)
    assert main(load_args(simulator, data, "--jobs", "1")) == 1
    assert calls["n"] >= 1
    state = json.loads((tmp_path / "infrascope-history" / "state.json").read_text())
    assert "backfill" in state["done"]
    assert any(s.startswith("pass-1:infrascope-utilisation-hourly:source_server_id:"
                            "cpu_utilisation:avg1h:") for s in state["done"])
    assert not any(s.startswith("pass-2") for s in state["done"])
    partial = blocks(data)
    monkeypatch.setattr(history, "rules_to_blocks", real)

    fetched = sim_requests(simulator["url"])
    assert main(load_args(simulator, data)) == 0
    assert sim_requests(simulator["url"]) == fetched  # the Hetzner backfill was not redone
    done = blocks(data)
    # pass 2 only: the CPU ratio (the memory ratio has no agent input here)
    assert set(partial) <= set(done) and len(done) == len(partial) + 1
    with Prometheus(data, workdir=tmp_path / "check", retention="60d") as prom:
        assert len(hourly_series(prom, state["start"], state["end"])) == CLOUD_SERVERS


def test_load_into_a_running_prometheus(simulator: dict[str, Any], tmp_path: Path) -> None:
    """No restart: the running Prometheus answers the passes and loads every block (it
    reloads its blocks every minute: this test takes up to four minutes)."""
    data = tmp_path / "data"
    with Prometheus(data, workdir=tmp_path / "prom", retention="40d") as prom:
        args = load_args(simulator, data, "--prometheus-url", prom.url)
        args.remove("--data-dir")
        args.remove(str(data))  # the running Prometheus says where its data is
        assert main(args) == 0
        state = json.loads((tmp_path / "infrascope-history" / "state.json").read_text())
        hourly = hourly_series(prom, state["start"], state["end"])
        assert len(hourly) == CLOUD_SERVERS


def test_errors_say_what_to_do(simulator: dict[str, Any], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    # A retention shorter than the history: Prometheus would delete it.
    with Prometheus(data, workdir=tmp_path / "prom", retention="3d") as prom:
        assert main(load_args(simulator, data, "--prometheus-url", prom.url)) == 1
        assert "--storage.tsdb.retention.time=" in capsys.readouterr().err
        # Prometheus runs on the data directory and no --prometheus-url: not a second one.
        assert main(load_args(simulator, data)) == 1
        err = capsys.readouterr().err
        assert f"(pid {prom.pid}) runs on {data.resolve()}" in err
    # A broken OpenMetrics file: named, and not marked done.
    bad = tmp_path / "agents.om"
    bad.write_text("node_memory_MemTotal_bytes{ 1\n")
    assert main(["history", "load", "--no-backfill", "--openmetrics", str(bad), "--data-dir",
                 str(data), "--progress", "none"]) == 1
    assert "agents.om" in capsys.readouterr().err
    state = json.loads((tmp_path / "infrascope-history" / "state.json").read_text())
    assert state["done"] == []
    # Nothing to load.
    assert main(["history", "load", "--no-backfill", "--data-dir", str(data)]) == 1
    assert "nothing to load" in capsys.readouterr().err


def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    bar = Tty()
    p = history.Progress(4, "auto", bar)
    p.step("one")
    p.partial(0.5)
    p.finish("one done")
    p.close()
    shown = bar.getvalue()
    assert shown.count("\r") == 3 and shown.endswith("\n")
    assert " 12% 0/4" in shown and " 25% 1/4" in shown and "one done" in shown
    plain = io.StringIO()
    p = history.Progress(2, "auto", plain)
    p.step("one")
    p.finish("one done")
    p.finish("two done")
    assert plain.getvalue().splitlines()[0].startswith("history: [1/2]")
    assert len(plain.getvalue().splitlines()) == 2 and "\r" not in plain.getvalue()


def test_sigterm_stops_the_load_and_its_children(simulator: dict[str, Any],
                                                 tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    proc = subprocess.Popen([str(BIN / "infrascope"), *load_args(simulator, data)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    work = tmp_path / "infrascope-history"
    wait_until(lambda: (work / "state.json").exists(), 60, "the load to start")
    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    # Nothing of the load runs any more (its process group is empty).
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)
