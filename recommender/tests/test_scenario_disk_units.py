"""Scenario: one unit for disks (and memory), checked against what the machine shows.

The Hetzner APIs say "GB" without a byte count. The contract fixes one conversion each
(``infrascope_core.contract.DISK_BYTES_PER_GB``: 10^9, ``MEMORY_BYTES_PER_GB``: 2^30),
the exporter applies it, and the recommender compares those sizes with what the agents
measure. This module holds a small fleet in a real Prometheus (``scenario_lib``: the
exporter's series as the exporter's own parsing makes them from the catalogue's API
objects, the agents' series from the harness's own model of each machine: an ext4 ``/``
on a disk of decimal GB, memory in GiB) and checks, server by server, that the recorded
sizes the recommender reads and the agent's measurements agree:

- ``/`` of an N GB disk is an ext4 of N·10^9 bytes less 2 %: 95-100 % of the recorded
  disk size. With the disk read as GiB it would be 0.98·10^9/2^30 = 91 %.
- ``MemTotal`` of a server with N GB of memory is N GiB: 90-100 % of the recorded memory
  size (a real kernel reserves a few per cent). With memory read as 10^9 it would be 107 %.

The fleet: Cloud types of three families, with the type's disk, with a primary disk
kept smaller by a CPU/RAM-only upgrade and with one larger than the type's, one server
without an agent (nothing to compare) and one dedicated server (Robot reports no disk).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scenario_lib import FleetServer, Profile, Scenario, vector

from infrascope_core.prometheus import binaries_available
from infrascope_recommender import loader

pytestmark = pytest.mark.skipif(not binaries_available(),
                                reason="needs /usr/bin/prometheus and /usr/bin/promtool")

ROOT_FS = 'node_filesystem_size_bytes{job="infrascope-agent",mountpoint="/"}'
MEMTOTAL = 'node_memory_MemTotal_bytes{job="infrascope-agent"}'
CPU, MEMORY = Profile(0.2), Profile(0.4)


def fleet() -> list[FleetServer]:
    c = "cloud"

    def cloud(server_id: str, name: str, server_type: str, disk_gb: int | None = None,
              location: str = "fsn1") -> FleetServer:
        return FleetServer(c, server_id, name, server_type, location=location,
                           project="units", cpu=CPU, memory=MEMORY, disk_gb=disk_gb)

    return [
        cloud("3001", "small", "cx23"),                      # 40 GB, 4 GB
        cloud("3002", "medium", "cx33"),                     # 80 GB, 8 GB
        cloud("3003", "legacy-amd", "cpx31"),                # 160 GB, 8 GB
        cloud("3004", "kept-disk", "cx43", disk_gb=80),      # CPU/RAM-only upgrade from cx33
        cloud("3005", "grown-disk", "cx33", disk_gb=160),    # primary disk above the type's
        cloud("3006", "dedicated-cpu", "ccx23", location="nbg1"),  # 160 GB, 16 GB
        FleetServer(c, "3007", "no-agent", "cx33", project="units", cpu=CPU, agent=False),
        FleetServer("dedicated", "4001", "robot-box", "EX44", datacenter="FSN1-DC14",
                    cpu=CPU, memory=MEMORY),
    ]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    work: Path = tmp_path_factory.mktemp("disk-units")
    started = Scenario(fleet(), work)
    try:
        started.start()
        yield started
    finally:
        started.stop()


def pairs(scenario: Scenario, measured: str, recorded: str,
          keys: set[str], timeout: float = 60.0) -> dict[str, tuple[float, float]]:
    """``{source/server_id: (measured, recorded)}`` for ``keys``, once Prometheus has
    both for every one of them (the recorded side comes from a rule evaluation)."""
    deadline = time.monotonic() + timeout
    while True:
        agent = vector(scenario.prom, measured)
        neutral = vector(scenario.prom, recorded)
        if keys <= agent.keys() & neutral.keys() or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return {k: (agent[k][1], neutral[k][1]) for k in sorted(keys & agent.keys() & neutral.keys())}


def cloud_with_agent(scenario: Scenario) -> set[str]:
    return {s.key for s in scenario.servers if s.cloud and s.agent}


def test_disk_sizes_match_the_agents_filesystems(scenario: Scenario) -> None:
    """For every Cloud server with an agent, its ``/`` filesystem is 95-100 % of the disk
    size the recommender reads (``source_server_id:server_disk_bytes:normalised``)."""
    keys = cloud_with_agent(scenario)
    assert len(keys) == 6
    got = pairs(scenario, ROOT_FS, loader.DISK, keys)
    assert set(got) == keys, f"missing: {sorted(keys - set(got))}"
    ratios = {k: fs / disk for k, (fs, disk) in got.items()}
    wrong = {k: round(r, 4) for k, r in ratios.items() if not 0.95 <= r <= 1}
    assert wrong == {}, f"/ filesystem / recorded disk size outside [0.95, 1]: {wrong}"
    # the disks differ (40 to 160 GB, the type's or not): a match is not one size
    assert len({disk for _, disk in got.values()}) == 3
    assert got["cloud/3004"][1] == 80 * 10**9  # the kept 80 GB, not the cx43's 160
    assert got["cloud/3005"][1] == 160 * 10**9  # the grown 160 GB, not the cx33's 80
    # no disk size of a dedicated server (Robot has none) to compare
    assert "dedicated/4001" not in vector(scenario.prom, loader.DISK)


def test_memory_sizes_match_the_agents_memtotal(scenario: Scenario) -> None:
    """For every Cloud server with an agent, ``MemTotal`` is 90-100 % of the memory size
    the recommender reads (``source_server_id:server_memory_bytes:normalised``)."""
    keys = cloud_with_agent(scenario)
    got = pairs(scenario, MEMTOTAL, loader.MEMORY, keys)
    assert set(got) == keys, f"missing: {sorted(keys - set(got))}"
    ratios = {k: mem / size for k, (mem, size) in got.items()}
    wrong = {k: round(r, 4) for k, r in ratios.items() if not 0.9 <= r <= 1}
    assert wrong == {}, f"MemTotal / recorded memory size outside [0.9, 1]: {wrong}"
    assert len({size for _, size in got.values()}) == 3  # 4, 8 and 16 GB
