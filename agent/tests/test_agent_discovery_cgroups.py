"""cgroups.py: owners from /proc/PID/cgroup, CPU and working-set memory on v1 and v2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from agent_discovery_testlib import fixture, write_tree

from infrascope_agent.cgroups import (
    Cgroups,
    Owner,
    Usage,
    container_cgroup_paths,
    owner_of,
    parse_proc_cgroup,
    unit_cgroup_paths,
)

CID = "3f4e8b1c2d5a6978e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7"
POD = "pod5b8a52f4-4c4e-4d3b-9a51-6f3c0e6a9b11"

# /proc/PID/cgroup of nginx on a cgroup-v1 systemd host (Ubuntu 18.04 layout)
V1_NGINX = """12:pids:/system.slice/nginx.service
11:memory:/system.slice/nginx.service
10:cpu,cpuacct:/system.slice/nginx.service
9:devices:/system.slice/nginx.service
8:blkio:/system.slice/nginx.service
7:freezer:/
6:net_cls,net_prio:/
5:perf_event:/
4:hugetlb:/
3:cpuset:/
2:rdma:/
1:name=systemd:/system.slice/nginx.service
0::/system.slice/nginx.service
"""
# a container of dockerd with the cgroupfs driver on cgroup v1
V1_DOCKER = "".join(f"{n}:{c}:/docker/{CID}\n" for n, c in [
    (12, "pids"), (11, "memory"), (10, "cpu,cpuacct"), (9, "devices"), (1, "name=systemd")]) + \
    f"0::/docker/{CID}\n"


@pytest.mark.parametrize(("text", "owner"), [
    ("0::/system.slice/nginx.service\n", Owner("systemd", "nginx.service")),
    (V1_NGINX, Owner("systemd", "nginx.service")),
    ("0::/system.slice/system-postgresql.slice/postgresql@15-main.service\n",
     Owner("systemd", "postgresql@15-main.service")),
    ("0::/user.slice/user-1000.slice/user@1000.service/app.slice/syncthing.service\n",
     Owner("systemd", "syncthing.service")),
    ("0::/user.slice/user-1000.slice/session-4.scope\n", Owner("systemd", "session-4.scope")),
    ("0::/init.scope\n", Owner("systemd", "init.scope")),
    (f"0::/system.slice/docker-{CID}.scope\n", Owner("docker", CID)),
    (V1_DOCKER, Owner("docker", CID)),
    (f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-{POD.replace('-', '_')}"
     f".slice/cri-containerd-{CID}.scope\n", Owner("container", CID)),
    (f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-{POD}.slice/"
     f"docker-{CID}.scope\n", Owner("docker", CID)),
    (f"11:memory:/kubepods/burstable/{POD}/{CID}\n1:name=systemd:/kubepods/burstable/{POD}/{CID}\n",
     Owner("container", CID)),
    (f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope/container\n",
     Owner("container", CID)),
    ("0::/\n", Owner("process", "")),
    # the build machine's own /proc/self/cgroup (hybrid v1, a sandbox's memory cgroup)
    ("9:name=systemd:/\n8:pids:/\n4:memory:/process_api/dc0b65d1089bcc76ae0f611d413c0075\n"
     "2:cpuacct:/\n1:cpu:/\n0::/\n", Owner("process", "")),
    ("", Owner("process", "")),
])
def test_agent_discovery_owner_from_proc_cgroup(text: str, owner: Owner) -> None:
    assert owner_of(text) == owner


def test_agent_discovery_parse_proc_cgroup_v1_and_v2() -> None:
    v1 = parse_proc_cgroup(V1_NGINX)
    assert v1["cpu"] == v1["cpuacct"] == v1["memory"] == "/system.slice/nginx.service"
    assert v1["name=systemd"] == "/system.slice/nginx.service" and v1[""] == v1["memory"]
    assert v1["freezer"] == "/"
    assert parse_proc_cgroup("0::/system.slice/ssh.service\n") == {"": "/system.slice/ssh.service"}


def test_agent_discovery_unit_and_container_paths() -> None:
    assert unit_cgroup_paths("nginx.service") == ["/system.slice/nginx.service"]
    assert "/system.slice/system-postgresql.slice/postgresql@15-main.service" in \
        unit_cgroup_paths("postgresql@15-main.service")
    assert "/system.slice/system-serial\\x2dgetty.slice/serial-getty@ttyS0.service" in \
        unit_cgroup_paths("serial-getty@ttyS0.service")
    assert unit_cgroup_paths("user@0.service")[0] == "/user.slice/user-0.slice/user@0.service"
    assert container_cgroup_paths(CID) == [f"/system.slice/docker-{CID}.scope", f"/docker/{CID}"]


def v2_group(root: Path, path: str, usage_usec: int | None = None, current: int | None = None,
             memory_stat: str | None = None) -> None:
    files = {"cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n"}
    rel = path.strip("/")
    if usage_usec is not None:
        files[f"{rel}/cpu.stat"] = fixture("cgroup", "v2-cpu.stat").replace(
            "usage_usec 8123456789", f"usage_usec {usage_usec}")
    if current is not None:
        files[f"{rel}/memory.current"] = f"{current}\n"
    if memory_stat is not None:
        files[f"{rel}/memory.stat"] = memory_stat
    write_tree(root, files)


def test_agent_discovery_cgroup_v2_cpu_and_working_set(tmp_path: Path) -> None:
    v2_group(tmp_path, "/system.slice/nginx.service", usage_usec=8123456789,
             current=240_123_904, memory_stat=fixture("cgroup", "v2-memory.stat"))
    cg = Cgroups(str(tmp_path))
    assert cg.version == 2
    usage = cg.usage("/system.slice/nginx.service")
    assert usage.cpu_seconds == pytest.approx(8123.456789)
    assert usage.memory_bytes == 240_123_904 - 134_217_728  # minus inactive_file
    assert cg.unit_usage("nginx.service") == usage
    # parsed /proc/PID/cgroup: v2 uses the "0::" path
    assert cg.usage(parse_proc_cgroup("0::/system.slice/nginx.service\n")) == usage


def test_agent_discovery_cgroup_v2_without_memory_stat_reports_raw_usage(tmp_path: Path) -> None:
    v2_group(tmp_path, f"/system.slice/docker-{CID}.scope", current=52_428_800)
    cg = Cgroups(str(tmp_path))
    assert cg.container_usage(CID) == Usage(None, 52_428_800.0)


def test_agent_discovery_cgroup_v2_working_set_never_negative(tmp_path: Path) -> None:
    v2_group(tmp_path, "/system.slice/x.service", current=1000,
             memory_stat="anon 0\ninactive_file 4096\n")
    assert Cgroups(str(tmp_path)).usage("/system.slice/x.service").memory_bytes == 0


def test_agent_discovery_cgroup_v2_templates_and_user_units(tmp_path: Path) -> None:
    v2_group(tmp_path, "/system.slice/system-postgresql.slice/postgresql@15-main.service",
             usage_usec=2_000_000, current=10)
    v2_group(tmp_path, "/system.slice/system-serial\\x2dgetty.slice/serial-getty@ttyS0.service",
             usage_usec=3_000_000)
    v2_group(tmp_path, "/user.slice/user-0.slice/user@0.service", usage_usec=4_000_000)
    cg = Cgroups(str(tmp_path))
    assert cg.unit_usage("postgresql@15-main.service") == Usage(2.0, 10.0)
    assert cg.unit_usage("serial-getty@ttyS0.service").cpu_seconds == 3.0
    assert cg.unit_usage("user@0.service").cpu_seconds == 4.0
    assert cg.unit_usage("absent.service") == Usage()


def v1_tree(root: Path, cpu_dir: str = "cpu,cpuacct") -> Path:
    """A v1 hierarchy as on a systemd host: tmpfs with one mount per controller."""
    os.makedirs(root / "unified", exist_ok=True)  # hybrid: systemd's own v2 tree, no controllers
    write_tree(root, {"unified/cgroup.controllers": "",
                      f"{cpu_dir}/cpuacct.usage": "999\n",
                      "memory/memory.usage_in_bytes": "1\n"})
    if cpu_dir != "cpuacct":
        os.symlink(cpu_dir, root / "cpuacct")  # how systemd mounts cpu,cpuacct
    return root


def test_agent_discovery_cgroup_v1_cpuacct_and_working_set(tmp_path: Path) -> None:
    root = v1_tree(tmp_path)
    write_tree(root, {
        "cpu,cpuacct/system.slice/nginx.service/cpuacct.usage": "1512345678901\n",
        "memory/system.slice/nginx.service/memory.usage_in_bytes": "38977536\n",
        # recorded on the build machine: total_inactive_file 376832
        "memory/system.slice/nginx.service/memory.stat": fixture("cgroup", "v1-memory.stat"),
    })
    cg = Cgroups(str(root))
    assert cg.version == 1
    usage = cg.unit_usage("nginx.service")
    assert usage.cpu_seconds == pytest.approx(1512.345678901)
    assert usage.memory_bytes == 38_977_536 - 376_832
    assert cg.usage(parse_proc_cgroup(V1_NGINX)) == usage


def test_agent_discovery_cgroup_v1_separate_mounts_and_cgroupfs_driver(tmp_path: Path) -> None:
    root = v1_tree(tmp_path, cpu_dir="cpuacct")
    write_tree(root, {
        f"cpuacct/docker/{CID}/cpuacct.usage": "2500000000\n",
        f"memory/docker/{CID}/memory.usage_in_bytes": "104857600\n",
        f"memory/docker/{CID}/memory.stat": "cache 4096\ninactive_file 4096\n"
                                            "total_inactive_file 8192\n",
    })
    cg = Cgroups(str(root))
    assert cg.container_usage(CID) == Usage(2.5, 104_857_600.0 - 8192)


def test_agent_discovery_cgroup_v1_per_controller_paths(tmp_path: Path) -> None:
    root = v1_tree(tmp_path)
    write_tree(root, {
        "cpu,cpuacct/cpuacct.usage": "7000000000\n",
        "memory/process_api/abc/memory.usage_in_bytes": "4096\n",
    })
    proc = "4:memory:/process_api/abc\n2:cpu,cpuacct:/\n0::/\n"
    assert Cgroups(str(root)).usage(parse_proc_cgroup(proc)) == Usage(7.0, 4096.0)


def test_agent_discovery_cgroup_missing_or_garbage_is_unknown(tmp_path: Path) -> None:
    assert Cgroups(str(tmp_path / "nowhere")).unit_usage("nginx.service") == Usage()
    v2_group(tmp_path, "/system.slice/bad.service", current=0)
    write_tree(tmp_path, {"system.slice/bad.service/memory.current": "max\n",
                          "system.slice/bad.service/cpu.stat": "usage_usec lots\n"})
    assert Cgroups(str(tmp_path)).usage("/system.slice/bad.service") == Usage()


def test_agent_discovery_cgroup_real_self() -> None:
    """This machine's own cgroup, whatever its layout, read like any other process's."""
    if not os.path.isdir("/sys/fs/cgroup") or not os.path.exists("/proc/self/cgroup"):
        pytest.skip("no cgroup filesystem here")
    text = Path("/proc/self/cgroup").read_text()
    cg = Cgroups("/sys/fs/cgroup")
    assert cg.version == (2 if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else 1)
    usage = cg.usage(parse_proc_cgroup(text))
    if not usage.known:
        pytest.skip(f"own cgroup not readable here: {text!r}")
    if usage.cpu_seconds is not None:
        assert usage.cpu_seconds > 0
    if usage.memory_bytes is not None:
        assert 0 <= usage.memory_bytes < 1 << 50
    assert isinstance(owner_of(text), Owner)
