"""``agents-history``: the simulated agents' past, as Prometheus would have scraped it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from infrascope_cli.history import openmetrics_to_blocks
from infrascope_sim.agents import REBOOT_PERIOD_SECONDS, boot_time, render_agent
from infrascope_sim.fleet import Fleet, load_fleet
from infrascope_sim.history import write_history
from infrascope_sim.server import Endpoints

END = 1_795_000_200  # a multiple of 300
END_ISO = "2026-11-18T11:10:00Z"  # END
Key = tuple[str, tuple[tuple[str, str], ...]]


def om_samples(path: Path) -> dict[Key, dict[float, float]]:
    """{(name, labels): {timestamp: value}} of an OpenMetrics file."""
    out: dict[Key, dict[float, float]] = defaultdict(dict)
    for family in parse_om(path.read_text()):
        for s in family.samples:
            assert s.timestamp is not None
            out[(s.name, tuple(sorted(s.labels.items())))][float(s.timestamp)] = s.value
    return out


def live(server: object, t: float, extra: dict[str, str]) -> dict[Key, float]:
    """What Prometheus stores from a scrape at ``t``: the exposition plus target labels."""
    out = {}
    for family in parse_text(render_agent(server, t)):  # type: ignore[arg-type]
        for s in family.samples:
            out[(s.name, tuple(sorted({**s.labels, **extra}.items())))] = s.value
    return out


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_fleet("demo")


def test_every_sample_is_what_the_live_agent_serves_then(fleet: Fleet, tmp_path: Path) -> None:
    out = tmp_path / "agents.om"
    result = write_history(fleet, out, END - 3600, END, cpu="all")
    samples = om_samples(out)
    assert result.servers == 23 and result.series == len(samples)
    for source, sid in (("dedicated", 2391001), ("cloud", 41000101)):
        server = fleet.find(source, sid)
        assert server is not None
        labels = {"job": "infrascope-agent", "instance": f"{source}/{sid}", "source": source,
                  "server_id": str(sid), "server_name": server.name}
        checked = 0
        for t in (END - 3600 + 300, END - 1800, END):
            scraped = live(server, t, labels)
            for key, series in samples.items():
                if dict(key[1])["instance"] != labels["instance"] or t not in series:
                    continue
                # counters are rounded to 10 ms on both sides; bytes to whole bytes
                tolerance = 1.0 if key[0].startswith("node_network_") else 0.011
                assert series[t] == pytest.approx(scraped[key], abs=tolerance), (key, t)
                checked += 1
        # memory (2 series) at all three times, every CPU x mode and the network
        # interface's two byte counters at the three, on the CPU grid
        modes = 8 if source == "cloud" else 7
        assert checked == 3 * 2 + 3 * server.cores * modes + 3 * 2


def test_labels_are_those_of_the_agents_sd(fleet: Fleet, served: Endpoints,
                                           tmp_path: Path) -> None:
    groups = httpx.get(served.agents_sd).json()
    sd = {tuple(sorted({k: v for k, v in g["labels"].items() if not k.startswith("__")}
                       .items())) for g in groups}
    out = tmp_path / "agents.om"
    write_history(load_fleet("demo"), out, END - 900, END, cpu="all")
    written = {tuple(sorted((k, v) for k, v in key[1]
                            if k not in ("job", "cpu", "mode", "device")))
               for key in om_samples(out)}
    assert written == sd
    assert {dict(key[1])["job"] for key in om_samples(out)} == {"infrascope-agent"}


def test_families_steps_and_choices(fleet: Fleet, tmp_path: Path) -> None:
    out = tmp_path / "agents.om"
    write_history(fleet, out, END - 3600, END, cpus=1,
                  exclude=["dedicated/2391006"])
    samples = om_samples(out)
    names = {key[0] for key in samples}
    assert names == {"node_memory_MemTotal_bytes", "node_memory_MemAvailable_bytes",
                     "node_cpu_seconds_total", "node_network_receive_bytes_total",
                     "node_network_transmit_bytes_total"}
    network = [key for key in samples if key[0].startswith("node_network_")]
    assert {dict(k[1])["device"] for k in network} == {"enp41s0"} and len(network) == 6 * 2
    cpu = [key for key in samples if key[0] == "node_cpu_seconds_total"]
    # the first CPU of every dedicated server but the excluded one, 7 modes (no steal)
    assert {dict(k[1])["source"] for k in cpu} == {"dedicated"}
    assert {dict(k[1])["cpu"] for k in cpu} == {"0"}
    assert len(cpu) == 6 * 7
    assert not any(dict(k[1])["server_id"] == "2391006" for k in samples)
    one = next(iter(samples[cpu[0]]))
    assert sorted(samples[cpu[0]]) == [END - 3600 + 150 * i for i in range(1, 25)]
    mem = next(k for k in samples if k[0] == "node_memory_MemAvailable_bytes")
    assert sorted(samples[mem]) == [END - 3600 + 300 * i for i in range(1, 13)]
    assert one == END - 3600 + 150
    write_history(fleet, out, END - 3600, END, cpu="none")
    assert {key[0] for key in om_samples(out)} == {"node_memory_MemTotal_bytes",
                                                   "node_memory_MemAvailable_bytes"}


def test_counters_restart_at_the_simulated_reboots(fleet: Fleet, tmp_path: Path) -> None:
    server = fleet.find("dedicated", 2391001)
    assert server is not None
    reboot = boot_time(server, END)  # the last reboot before END
    assert reboot == server.created + (END - server.created) // REBOOT_PERIOD_SECONDS \
        * REBOOT_PERIOD_SECONDS
    out = tmp_path / "agents.om"
    write_history(fleet, out, reboot - 600, reboot + 600, cpus=1)
    idle = next(v for k, v in om_samples(out).items()
                if k[0] == "node_cpu_seconds_total" and dict(k[1])["server_id"] == "2391001"
                and dict(k[1])["mode"] == "idle")
    times = sorted(idle)
    # no sample in the second it boots (all counters 0 there), and a reset after it
    assert reboot not in idle and reboot % 150 == 0
    before = [t for t in times if t < reboot]
    after = [t for t in times if t > reboot]
    assert idle[before[-1]] > 1_000_000 and idle[after[0]] < 150
    assert all(idle[a] < idle[b] for a, b in zip(after, after[1:], strict=False))


def test_command_line_and_promtool(tmp_path: Path) -> None:
    out = tmp_path / "agents.om"
    cli = [sys.executable, "-m", "infrascope_sim", "agents-history", "--fleet", "demo",
           "--output", str(out), "--start", str(END - 7200), "--end", END_ISO,
           "--cpus", "2", "--exclude", "dedicated/2391007"]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "22 servers" in done.stdout and END_ISO in done.stdout
    assert out.read_text().endswith("# EOF\n")
    assert not list(tmp_path.glob("*.tmp"))
    bad = subprocess.run([*cli[:-2], "--exclude", "robot/1"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "--exclude" in bad.stderr
    if shutil.which("promtool") is None:
        return
    # The file loads with the history pipeline's own conversion (infrascope history load).
    assert openmetrics_to_blocks(out, tmp_path / "data", timeout=120)
