"""``infrascope-exporter backfill`` against the simulator, promtool and a real Prometheus.

A small fleet: ``const-1`` (cx33, 4 vCPUs, a flat 25 % load: exactly 1.0 vCPU
busy in every bucket), ``web-1`` (cx33, diurnal web load) and one dedicated
server whose configured labels need OpenMetrics escaping. Expected values
come from the simulator's workload model, never from the file under test.

Why the expected values are exact: a sample at ``t`` holds the mean of the
bucket ``[t - S, t)``, all buckets are ``S`` wide, so the mean of the N samples
at ``b+S, ..., b+N·S`` is ``(1/(N·S)) ∫_b^{b+N·S} load = mean_cpu(b, b+N·S)``.
The PromQL windows below end on a sample and start half a step before the
first wanted sample, so which samples they select does not depend on whether
a Prometheus version treats the window's left edge as open or closed.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from infrascope_cli import history, rulespack
from infrascope_core.prometheus import Prometheus, binaries_available
from infrascope_exporter import backfill
from infrascope_exporter.config import load_config
from infrascope_exporter.exporter import Exporter
from infrascope_sim.fleet import Fleet, load_fleet_data
from infrascope_sim.server import Endpoints, running
from infrascope_sim.state import Simulator

needs_prometheus = pytest.mark.skipif(not binaries_available(), reason="promtool/prometheus "
                                      "not installed (apt-get install prometheus)")

TOKEN = "bf-test-token-3c9a71d2"
ROBOT_USER = "#ws+Backfill"
ROBOT_PASSWORD = "bf-robot-password-58e0"
PROJECT = "shop"
CONST_ID, WEB_ID, DEDI = 41000001, 41000002, 2391001
CORES = 4  # cx33
STEP = 300
DAY = 86_400
INSTANCE = "exporter:8790"
TARGET = {"job": "hetzner", "instance": INSTANCE}
# Needs every OpenMetrics escape: backslash, double quote, newline; and UTF-8.
TRICKY = 'rack "B"\\row 3\nüber'

INVENTORY = backfill.INVENTORY_FAMILIES
METRIC_FAMILIES = ("hetzner_server_cpu_cores_used", "hetzner_server_disk_iops",
                   "hetzner_server_disk_bandwidth_bytes_per_second",
                   "hetzner_server_network_bandwidth_bytes_per_second",
                   "hetzner_server_network_packets_per_second")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def fleet_data(now: float) -> dict[str, Any]:
    created = iso(now - 40 * DAY)
    return {
        "cloud": {"projects": [{"name": PROJECT, "token": TOKEN, "servers": [
            {"name": "const-1", "id": CONST_ID, "type": "cx33", "created": created,
             "labels": {"env": "test"},
             "workload": {"profile": "constant", "cpu_base": 0.25, "cpu_peak": 0.25,
                          "cpu_jitter": 0}},
            {"name": "web-1", "id": WEB_ID, "type": "cx33", "created": created,
             "labels": {"env": "production", "team": "shop"}, "backups": True,
             "workload": {"profile": "diurnal-web"}},
        ]}]},
        "robot": {"user": ROBOT_USER, "password": ROBOT_PASSWORD, "servers": [
            {"name": "db-1", "product": "AX42", "number": DEDI, "dc": "FSN1-DC14",
             "monthly_price_net": "49.00"}]},
    }


def exporter_config(ep: Endpoints) -> dict[str, Any]:
    return {
        "cloud": {"endpoint": ep.cloud, "projects": [{"name": PROJECT, "token": TOKEN}]},
        "robot": {"endpoint": ep.robot, "user": ROBOT_USER, "password": ROBOT_PASSWORD,
                  "labels": {DEDI: {"rack": TRICKY, "env": "production"}}},
        "prices": {"dedicated_servers": {DEDI: "49.00"}},
    }


@pytest.fixture(autouse=True)
def _restore_exporter_logger() -> Iterator[None]:
    """backfill.main() points the exporter's logger at the (captured) stderr of its test."""
    import logging

    logger = logging.getLogger("infrascope_exporter")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


class World:
    def __init__(self, fleet: Fleet, sim: Simulator, ep: Endpoints, config_file: Path) -> None:
        self.fleet, self.sim, self.ep, self.config_file = fleet, sim, ep, config_file

    def workload(self, server_id: int) -> Any:
        server = self.fleet.find("cloud", server_id)
        assert server is not None
        return server.workload

    def expected_cores(self, server_id: int, start: float, end: float) -> float:
        return CORES * self.workload(server_id).mean_cpu(start, end)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    fleet = load_fleet_data(fleet_data(time.time()), name="backfill-test")
    sim = Simulator(fleet)
    config_file = tmp_path_factory.mktemp("config") / "exporter.yaml"
    with running(sim) as ep:
        config_file.write_text(yaml.safe_dump(exporter_config(ep)))
        yield World(fleet, sim, ep, config_file)


def run_backfill(world: World, output: Path, days: int, *extra: str) -> tuple[int, float]:
    started = time.monotonic()
    rc = backfill.main(["--days", str(days), "--output", str(output),
                        "--config.file", str(world.config_file), "--instance", INSTANCE,
                        *extra])
    return rc, time.monotonic() - started


# ----------------------------------------------------------------------------
# Reading the file back
# ----------------------------------------------------------------------------
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+) (\S+)$')


LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


class Parsed:
    """Series of a backfill file; ``strict`` reads it with prometheus_client's OpenMetrics
    parser (slow), otherwise with a regex (for the 30-day file)."""

    def __init__(self, text: str, strict: bool = True) -> None:
        self.text = text
        self.families: list[str] = []  # in file order
        self.series: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[int, float]]] = {}
        if not strict:
            for line in text.splitlines():
                if line.startswith("#"):
                    continue
                m = SAMPLE.match(line)
                assert m, line
                labels = tuple(sorted(
                    (k, re.sub(r'\\[\\"n]', lambda e: UNESCAPE[e.group(0)], v))
                    for k, v in LABEL.findall(m.group(2) or "")))
                self.series.setdefault((m.group(1), labels), []).append(
                    (int(m.group(4)), float(m.group(3))))
            return
        for family in openmetrics_families(text):  # the reference OpenMetrics parser
            assert family.type == "gauge", family.name
            assert family.name not in self.families, f"{family.name} is split up"
            self.families.append(family.name)
            for s in family.samples:
                assert s.name == family.name
                assert s.timestamp is not None, f"{s.name} without a timestamp"
                ts = float(s.timestamp)
                assert ts.is_integer()
                key = (s.name, tuple(sorted(s.labels.items())))
                self.series.setdefault(key, []).append((int(ts), s.value))

    def of(self, family: str, **labels: str) -> dict[tuple[tuple[str, str], ...],
                                                    list[tuple[int, float]]]:
        return {k[1]: v for k, v in self.series.items()
                if k[0] == family and all(dict(k[1]).get(n) == v for n, v in labels.items())}

    def one(self, family: str, **labels: str) -> list[tuple[int, float]]:
        found = self.of(family, **labels)
        assert len(found) == 1, (family, labels, list(found))
        return next(iter(found.values()))


def live_exposition(world: World, metrics: bool) -> dict[str, set[tuple[tuple[str, str], ...]]]:
    """Label sets per family of the live exporter's /metrics for the same config."""
    exporter = Exporter(load_config(["--config.file", str(world.config_file)], environ={}))
    try:
        for project in exporter.config.projects:
            exporter.refresh_pricing(project)
            exporter.refresh_inventory(project)
            if metrics:
                for server in exporter.projects[project.name].servers:
                    exporter.poll_metrics(project, server)
        exporter.refresh_robot_products()
        exporter.refresh_robot()
        exporter.render()
        out: dict[str, set[tuple[tuple[str, str], ...]]] = {}
        for family in text_string_to_metric_families(exporter.rendered.decode()):
            for s in family.samples:
                out.setdefault(s.name, set()).add(
                    tuple(sorted({**s.labels, **TARGET}.items())))
        return out
    finally:
        exporter.stop()


# ----------------------------------------------------------------------------
# 1. The file
# ----------------------------------------------------------------------------
def test_file_is_openmetrics_with_live_series(world: World, tmp_path: Path, capsys) -> None:
    out = tmp_path / "hetzner.om"
    rc, seconds = run_backfill(world, out, 2)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    print(f"backfill --days 2: {seconds:.2f}s", file=sys.stderr)
    text = out.read_text(encoding="utf-8")
    assert text.endswith("\n# EOF\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hetzner.om"]  # no .tmp, no parts

    # Families contiguous, each introduced by # HELP and # TYPE, samples of that family only.
    current = None
    seen: list[str] = []
    for line in text.splitlines()[:-1]:
        if line.startswith("# HELP "):
            current = line.split(" ")[2]
            assert current not in seen
            seen.append(current)
        elif line.startswith("# TYPE "):
            assert line == f"# TYPE {current} gauge"
        else:
            m = SAMPLE.match(line)
            assert m and m.group(1) == current, line
            assert re.fullmatch(r"\d{10}", m.group(4)), line  # Unix seconds, not ms
    assert sorted(seen[:5]) == sorted(METRIC_FAMILIES) and seen[5:] == list(INVENTORY)

    parsed = Parsed(text)  # also checks the syntax with prometheus_client's parser
    assert parsed.families == seen
    end = backfill.floor_to(time.time() - 3 * 3600, STEP)
    start = end - 2 * DAY
    grid = list(range(start + STEP, end + 1, STEP))
    for key, points in parsed.series.items():
        stamps = [t for t, _ in points]
        assert stamps == sorted(set(stamps)), f"{key} not strictly increasing"
        # end = now - 3h on the step grid (the run started a moment before `end` here)
        assert stamps[0] >= grid[0] - STEP and stamps[-1] <= grid[-1], key

    # const-1: 4 vCPUs at 25 % → exactly 1.0 vCPU in every bucket, no gaps.
    const = parsed.one("hetzner_server_cpu_cores_used", server_id=str(CONST_ID))
    assert len(const) == 2 * DAY // STEP
    assert all(v == 1.0 for _, v in const)
    assert all(b - a == STEP for (a, _), (b, _) in zip(const, const[1:], strict=False))

    # web-1: the samples are the bucket means of the workload, so their mean is exact.
    web = parsed.one("hetzner_server_cpu_cores_used", server_id=str(WEB_ID))
    first, last = web[0][0], web[-1][0]
    assert last - first == 2 * DAY - STEP
    mean = math.fsum(v for _, v in web) / len(web)
    assert mean == pytest.approx(world.expected_cores(WEB_ID, first - STEP, last), rel=1e-12)
    for t, v in web[::37]:
        assert v == pytest.approx(world.expected_cores(WEB_ID, t - STEP, t), rel=1e-12)

    # Inventory: at every sample timestamp, for Cloud and dedicated servers.
    for family in ("hetzner_server_info", "hetzner_server_labels",
                   "hetzner_server_monthly_cost_euros", "hetzner_server_hourly_cost_euros"):
        for source, sid in (("cloud", CONST_ID), ("cloud", WEB_ID), ("dedicated", DEDI)):
            stamps = [t for t, _ in parsed.one(family, source=source, server_id=str(sid))]
            assert stamps == [t for t, _ in const], (family, sid)
    assert {v for _, v in parsed.one("hetzner_server_cpu_cores",
                                     server_id=str(WEB_ID))} == {4.0}

    # Label sets: exactly the live exposition's (plus the target labels Prometheus adds).
    live = live_exposition(world, metrics=True)
    for family in (*INVENTORY, *METRIC_FAMILIES):
        backfilled = {labels for (name, labels) in parsed.series if name == family}
        assert backfilled == live[family], family
    labels = dict(next(iter(parsed.of("hetzner_server_labels", source="dedicated"))))
    assert labels["label_rack"] == TRICKY
    # Values of the inventory series are the live ones too.
    assert parsed.one("hetzner_server_monthly_cost_euros", server_id=str(DEDI))[0][1] == 49.0


def test_progress_and_next_steps_are_printed(world: World, tmp_path: Path, capsys) -> None:
    out = tmp_path / "hetzner.om"
    rc, _ = run_backfill(world, out, 1)
    captured = capsys.readouterr()
    assert rc == 0
    assert "event=backfill_plan" in captured.err
    assert "servers_done=3 servers_total=3" in captured.err
    assert "requests_used=" in captured.err
    end = backfill.floor_to(time.time() - 3 * 3600, STEP)
    # The next step is the one pipeline that loads history, with this file and range.
    assert re.search(r"infrascope history load --no-backfill --openmetrics "
                     + re.escape(str(out)) + " --end " + re.escape(iso(end)), captured.out)
    for secret in (TOKEN, ROBOT_PASSWORD):
        assert secret not in captured.out + captured.err


# ----------------------------------------------------------------------------
# 4. The request budget
# ----------------------------------------------------------------------------
def test_requests_are_the_planned_chunks_plus_inventory(world: World, tmp_path: Path) -> None:
    config = load_config(["--config.file", str(world.config_file)], environ={})
    options = backfill.Options(output=tmp_path / "b.om", days=2, target_labels=TARGET)
    world.sim.requests.clear()
    result = backfill.run(config, options, keep_exporter=True)
    assert result.exporter is not None
    stats = world.sim.stats()

    # 2 days of 300 s buckets = 576 per server = 2 requests of at most 500 points each.
    chunks_per_server = math.ceil(2 * DAY / STEP / 500)
    assert chunks_per_server == 2
    expected_metrics = 2 * chunks_per_server
    # One page each: /pricing, /server_types, /servers and the five resource lists.
    inventory = ["/pricing", "/server_types", "/servers", "/volumes", "/primary_ips",
                 "/floating_ips", "/load_balancers", "/images"]
    by_endpoint = {row["endpoint"]: row for row in stats["rows"] if row["api"] == "cloud"}
    cloud_rows = [row for row in stats["rows"] if row["api"] == "cloud"]
    assert all(row["status"] == 200 for row in stats["rows"]), stats["rows"]  # no 429
    assert sum(r["count"] for r in cloud_rows) == expected_metrics + len(inventory)
    metric_rows = [r for r in cloud_rows if "metrics" in r["endpoint"]]
    assert sum(r["count"] for r in metric_rows) == expected_metrics
    for path in inventory:
        assert any(e.endswith(path) and r["count"] == 1 for e, r in by_endpoint.items()), path

    # The exporter's own bookkeeping agrees, and it saw no rate limit.
    requests = result.exporter.health.requests()
    assert sum(n for (api, _, _, _), n in requests.items() if api == "cloud") == \
        expected_metrics + len(inventory)
    assert requests[("cloud", PROJECT, "/servers/{id}/metrics", "success")] == expected_metrics
    assert not [k for k in requests if k[3] != "success"]
    assert result.requests == expected_metrics + len(inventory)
    assert result.metric_requests == expected_metrics


def test_a_429_storm_is_waited_out_and_the_server_refetched(world: World, tmp_path: Path,
                                                            capsys) -> None:
    fault = {"kind": "rate_limit", "api": "cloud", "path": "/v1/servers/*/metrics",
             "duration": 2}
    assert httpx.post(world.ep.control + "/faults", json=fault).status_code == 201
    try:
        rc, seconds = run_backfill(world, tmp_path / "b.om", 2)
    finally:
        httpx.delete(world.ep.control + "/faults")
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "event=backfill_rate_limited" in captured.err
    assert seconds < 30
    parsed = Parsed((tmp_path / "b.om").read_text(), strict=False)
    const = parsed.one("hetzner_server_cpu_cores_used", server_id=str(CONST_ID))
    assert len(const) == 2 * DAY // STEP and {v for _, v in const} == {1.0}


def test_demo_fleet_two_projects_and_robot(sim: Simulator, served: Endpoints,
                                           make_config, tmp_path: Path) -> None:
    """The conftest demo fleet: projects are backfilled in parallel, each server once."""
    from exporter_testlib import demo_config_data

    config = make_config(demo_config_data(served))
    sim.requests.clear()
    result = backfill.run(config, backfill.Options(output=tmp_path / "demo.om", days=1,
                                                   target_labels=TARGET))
    parsed = Parsed((tmp_path / "demo.om").read_text(), strict=False)
    cloud = {dict(k)["server_id"] for k in parsed.of("hetzner_server_cpu_cores_used")}
    assert cloud == {str(s.id) for s in sim.fleet.cloud_servers}
    assert sim.fleet.robot is not None
    dedicated = {dict(k)["server_id"] for k in parsed.of("hetzner_server_info",
                                                         source="dedicated")}
    assert dedicated == {str(d.number) for d in sim.fleet.robot.servers}
    metric_requests = sum(r["count"] for r in sim.stats()["rows"] if "metrics" in r["endpoint"])
    assert metric_requests == result.metric_requests == len(cloud)  # 288 buckets: one each
    assert all(r["status"] == 200 for r in sim.stats()["rows"])


# ----------------------------------------------------------------------------
# 5. Errors
# ----------------------------------------------------------------------------
def cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HCLOUD_", "ROBOT_", "INFRASCOPE_"))}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "infrascope_exporter", "backfill", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_bad_config_exits_2_without_secrets(world: World, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    data = exporter_config(world.ep)
    data["budget"] = {"share": 7}
    bad.write_text(yaml.safe_dump(data))
    out = tmp_path / "x.om"
    proc = cli("--days", "2", "--output", str(out), "--config.file", str(bad),
               env_extra={"HCLOUD_TOKEN": TOKEN + "-env"})
    assert proc.returncode == 2, proc.stderr
    assert "configuration error" in proc.stderr and "budget.share" in proc.stderr
    for secret in (TOKEN, ROBOT_PASSWORD):
        assert secret not in proc.stdout + proc.stderr
    assert not out.exists()

    for args, key in ((["--step", "600"], "--step"), (["--end-offset", "1h"], "--end-offset"),
                      (["--days", "zero"], "--days"), ([], "--output")):
        output = [] if key == "--output" else ["--output", str(out)]
        proc = cli(*args, *output, "--config.file", str(world.config_file))
        assert proc.returncode == 2, (args, proc.stderr)
        assert "configuration error" in proc.stderr and key in proc.stderr, proc.stderr
        assert TOKEN not in proc.stdout + proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_api_failures_exit_1_and_write_nothing(world: World, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.yaml"
    data = exporter_config(world.ep)
    data["cloud"]["projects"][0]["token"] = "not-the-token-" + TOKEN
    wrong.write_text(yaml.safe_dump(data))
    out = tmp_path / "x.om"
    proc = cli("--days", "1", "--output", str(out), "--config.file", str(wrong))
    assert proc.returncode == 1, proc.stderr
    assert "token was rejected" in proc.stderr and "nothing written" in proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr

    # A lower point cap than asked for: the API raises the step; that must fail clearly.
    proc = cli("--days", "3", "--output", str(out), "--config.file", str(world.config_file),
               "--points-per-request", "600")  # 864 buckets: a first chunk of 600
    assert proc.returncode == 1, proc.stderr
    assert "point cap" in proc.stderr and "--points-per-request" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wrong.yaml"]


def test_cli_help_lists_backfill_and_exporter_flags() -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    assert "--end-offset" in proc.stdout and "--config.file" in proc.stdout


def test_openmetrics_escaping() -> None:
    assert backfill.format_labels({"a": TRICKY}) == '{a="rack \\"B\\"\\\\row 3\\nüber"}'
    assert backfill.format_timestamp(1_700_000_000.0) == "1700000000"
    assert backfill.format_value(4.0) == "4.0"
    assert backfill.format_value(float("nan")) == "NaN"
    parsed = list(openmetrics_families(
        f"# TYPE m gauge\nm{backfill.format_labels({'a': TRICKY})} 1.0 1700000000\n# EOF\n"))
    assert parsed[0].samples[0].labels == {"a": TRICKY}


# ----------------------------------------------------------------------------
# 2. + 3. promtool and a real Prometheus
# ----------------------------------------------------------------------------
def promtool_blocks(source: Path, out_dir: Path, block: str) -> tuple[list[Path], float]:
    """The history pipeline's own conversion (infrascope history load), timed."""
    started = time.monotonic()
    blocks = history.openmetrics_to_blocks(source, out_dir, block=block, timeout=300)
    return blocks, time.monotonic() - started


@needs_prometheus
def test_promtool_accepts_the_file(world: World, tmp_path: Path) -> None:
    out = tmp_path / "hetzner.om"
    assert run_backfill(world, out, 2)[0] == 0
    blocks, seconds = promtool_blocks(out, tmp_path / "blocks", "2h")
    print(f"promtool (2 days, 2h blocks): {seconds:.2f}s", file=sys.stderr)
    assert len(blocks) >= 24  # 2 days of 2-hour blocks
    samples = sum(json.loads((b / "meta.json").read_text())["stats"]["numSamples"]
                  for b in blocks)
    assert samples == sum(len(v) for v in Parsed(out.read_text(), strict=False).series.values())


@pytest.fixture(scope="module")
def prometheus_30d(world: World, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[tuple[Prometheus, Parsed, dict[str, float]]]:
    """A 30-day backfill loaded into a real Prometheus (the rules test adds to it)."""
    if not binaries_available():
        pytest.skip("promtool/prometheus not installed")
    work = tmp_path_factory.mktemp("prom30d")
    out = work / "hetzner.om"
    timings: dict[str, float] = {}
    rc, timings["backfill"] = run_backfill(world, out, 30)
    assert rc == 0
    parsed = Parsed(out.read_text(encoding="utf-8"), strict=False)
    # 24h (promtool rounds down to 18h blocks): promtool re-reads the whole file for every
    # block, so 2-hour blocks take ~9x as long on a 30-day file (see docs/backfill.md).
    blocks, timings["promtool"] = promtool_blocks(out, work / "data", "24h")
    assert blocks
    prom = Prometheus(work / "data", workdir=work)
    started = time.monotonic()
    try:
        prom.start()
        timings["prometheus_ready"] = time.monotonic() - started
        yield prom, parsed, timings
    finally:
        prom.stop()
        print(f"30-day timings: {timings}", file=sys.stderr)


@needs_prometheus
def test_prometheus_averages_equal_the_workload_mean(world: World, prometheus_30d) -> None:
    prom, parsed, timings = prometheus_30d
    web = parsed.one("hetzner_server_cpu_cores_used", server_id=str(WEB_ID))
    first, last = web[0][0], web[-1][0]
    n = len(web)
    # Hetzner keeps 30 days: the start is clipped to now - 30d + 1 min, on the step grid.
    assert 29 * DAY < last - first < 30 * DAY
    assert n == (last - first) // STEP + 1  # no missing bucket
    sel = f'hetzner_server_cpu_cores_used{{server_id="{WEB_ID}"}}'

    # The whole backfilled range: samples first..last = buckets [first - S, last).
    window = f"{last - first + STEP // 2}s"
    assert prom.scalar(f"count_over_time({sel}[{window}])", last) == n
    got = prom.scalar(f"avg_over_time({sel}[{window}])", last)
    want = world.expected_cores(WEB_ID, first - STEP, last)
    assert got == pytest.approx(want, rel=1e-6, abs=0)
    print(f"30d avg_over_time {got!r} vs workload {want!r} "
          f"(rel error {abs(got - want) / want:.1e})", file=sys.stderr)

    # A 2-day window ending at the last sample: samples last-2d+S..last = [last-2d, last).
    got = prom.scalar(f"avg_over_time({sel}[{2 * DAY - STEP // 2}s])", last)
    assert got == pytest.approx(world.expected_cores(WEB_ID, last - 2 * DAY, last), rel=1e-6,
                                abs=0)
    assert prom.scalar(f"count_over_time({sel}[{2 * DAY - STEP // 2}s])", last) == \
        2 * DAY // STEP

    # const-1: exactly one vCPU busy over the whole range.
    const = f'hetzner_server_cpu_cores_used{{server_id="{CONST_ID}"}}'
    for fn in ("avg_over_time", "min_over_time", "max_over_time"):
        assert prom.scalar(f"{fn}({const}[{window}])", last) == 1.0

    # Prometheus' 5-minute lookback never finds a gap, at any instant in the range.
    for expr in (sel, f'hetzner_server_info{{server_id="{WEB_ID}"}}',
                 f'hetzner_server_info{{server_id="{DEDI}"}}'):
        series = prom.query_range(expr, first, last, 250)
        assert len(series) == 1 and len(series[0]["values"]) == (last - first) // 250 + 1, expr


@needs_prometheus
def test_prometheus_series_are_the_live_series(world: World, prometheus_30d) -> None:
    prom, parsed, _ = prometheus_30d
    last = max(t for points in parsed.series.values() for t, _ in points)
    live = live_exposition(world, metrics=True)
    for family in (*INVENTORY, *METRIC_FAMILIES):
        stored = {tuple(sorted((k, v) for k, v in r["metric"].items() if k != "__name__"))
                  for r in prom.query(family, last)}
        # Prometheus drops empty-valued labels, at scrape time and in promtool alike.
        expected = {tuple((k, v) for k, v in labels if v != "") for labels in live[family]}
        assert stored == expected, family
    rack = prom.query(f'hetzner_server_labels{{source="dedicated",server_id="{DEDI}"}}', last)
    assert rack[0]["metric"]["label_rack"] == TRICKY
    # The README's join works on backfilled data: utilisation with the server name.
    joined = prom.query(
        f'hetzner_server_cpu_cores_used{{server_id="{CONST_ID}"}} / on(source, server_id) '
        "hetzner_server_cpu_cores * on(source, server_id) group_left(server_name) "
        "hetzner_server_info", last)
    assert len(joined) == 1 and joined[0]["metric"]["server_name"] == "const-1"
    assert float(joined[0]["value"][1]) == 0.25


RULES = """
groups:
  - name: infrascope-backfill-test
    interval: 1m
    rules:
      - record: source_server_id:cpu_utilisation:avg1h
        expr: avg_over_time(source_server_id:cpu_utilisation:ratio[1h])
      - alert: Busy
        expr: source_server_id:cpu_utilisation:avg1h > 0.9
      - record: source_server_id:cpu_utilisation:ratio
        expr: hetzner_server_cpu_cores_used / on(source, server_id) hetzner_server_cpu_cores
"""


@needs_prometheus
def test_recording_rules_backfill_in_two_passes(world: World, prometheus_30d, tmp_path: Path
                                                ) -> None:
    """The backfilled file through the one pipeline's rule passes (infrascope history
    load, with a stopped Prometheus: its temporary one per pass): the ratio, then the
    hourly average that reads it — exact against the workload."""
    prom, parsed, timings = prometheus_30d
    web = parsed.one("hetzner_server_cpu_cores_used", server_id=str(WEB_ID))
    last = int(web[-1][0])
    start = last - 6 * 3600  # six hours keep the test short; the procedure is the same
    passes = rulespack.split_passes([("rules.yml", yaml.safe_load(RULES))])
    assert len(passes) == 2  # ratio, then avg1h (which reads ratio); the alert is dropped
    plan = history.Plan(data_dir=prom.data_dir, work_dir=tmp_path / "work", rules_dir=tmp_path,
                        start=start, end=last, openmetrics=[], backfill=None,
                        prometheus_url=None, jobs=2, passes=passes)
    started = time.monotonic()
    prom.stop()
    try:
        summary = history.load(plan, progress_mode="none")
    finally:
        prom.start()
    timings["rules_two_passes"] = time.monotonic() - started
    assert summary.rule_blocks >= 2 and not summary.empty_rules

    # Pass 2's last evaluation e2 read pass 1's samples in its window (they were loaded).
    avg1h = prom.query(f'source_server_id:cpu_utilisation:avg1h{{server_id="{WEB_ID}"}}[10m]',
                       last)
    assert avg1h, "pass 2 produced nothing (pass 1 blocks not loaded?)"
    e2, got = (float(x) for x in avg1h[0]["values"][-1])
    ratio = f'source_server_id:cpu_utilisation:ratio{{server_id="{WEB_ID}"}}'
    raw = prom.query(f"{ratio}[1h]", e2)
    assert raw, "pass 1 produced nothing"
    points = [(float(t), float(v)) for t, v in raw[0]["values"]]
    assert len(points) >= 59
    assert got == pytest.approx(math.fsum(v for _, v in points) / len(points), rel=1e-9)
    # Pass 1: the evaluation at e saw the bucket sample at or before e (lookback), so its
    # value is that bucket's workload mean (cores cancel out).
    for e, v in points:
        bucket_end = backfill.floor_to(e, STEP)
        assert v == pytest.approx(world.workload(WEB_ID).mean_cpu(bucket_end - STEP, bucket_end),
                                  rel=1e-9)


def metrics_requests(world: World) -> int:
    """Metrics requests the simulator answered with 200 since its stats were reset."""
    rows = httpx.get(world.ep.control + "/stats").json()["rows"]
    return sum(r["count"] for r in rows if r["endpoint"].endswith("/metrics")
               and r["status"] == 200)


def test_an_interrupted_backfill_resumes_with_the_servers_left(world: World, tmp_path: Path,
                                                               capsys) -> None:
    """web-1 fails after const-1 is written: the next run fetches web-1 only, and the file
    is the one a run without the failure writes."""
    clean = tmp_path / "clean" / "hetzner.om"
    clean.parent.mkdir()
    end = iso(backfill.floor_to(time.time() - 4 * 3600, STEP))
    httpx.post(world.ep.control + "/stats/reset")
    assert run_backfill(world, clean, 2, "--end", end)[0] == 0
    both = metrics_requests(world)  # the two Cloud servers, created at the same time
    out = tmp_path / "resumed" / "hetzner.om"
    out.parent.mkdir()
    fault = {"kind": "error", "api": "cloud", "path": f"/v1/servers/{WEB_ID}/metrics",
             "status": 500}
    assert httpx.post(world.ep.control + "/faults", json=fault).status_code == 201
    try:
        assert run_backfill(world, out, 2, "--end", end)[0] == 1
    finally:
        httpx.delete(world.ep.control + "/faults")
    err = capsys.readouterr().err
    assert "event=backfill_kept" in err and not out.exists()
    journal = json.loads((out.parent / ".hetzner.om.parts" / "journal.json").read_text())
    assert list(journal["done"]) == [f"cloud/{CONST_ID}"]

    httpx.post(world.ep.control + "/stats/reset")
    assert run_backfill(world, out, 2, "--end", end)[0] == 0
    assert "event=backfill_resumed" in capsys.readouterr().err
    assert metrics_requests(world) == both // 2  # web-1's only: const-1 was not refetched
    assert Parsed(out.read_text(), strict=False).series == \
        Parsed(clean.read_text(), strict=False).series
    assert sorted(p.name for p in out.parent.iterdir()) == ["hetzner.om"]  # parts gone
