"""The /proc reader: a zombie is not alive, a gone process has no status, a group's
members are its live processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from infrascope_core.procfs import group_members, pid_alive, proc_status, stat_fields


def test_this_process_is_alive_with_its_status() -> None:
    assert pid_alive(os.getpid())
    status = proc_status(os.getpid())
    assert status["Pid"] == str(os.getpid())
    assert status["State"].startswith(("R", "S"))
    fields = stat_fields(os.getpid())
    assert fields is not None and int(fields[1]) == os.getppid()


def test_a_zombie_is_not_alive_and_a_reaped_process_has_no_status() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while (stat_fields(child.pid) or ["?"])[0] != "Z" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stat_fields(child.pid) is not None  # not reaped yet: a zombie
    assert not pid_alive(child.pid)
    child.wait(timeout=10)
    assert proc_status(child.pid) == {} and stat_fields(child.pid) is None
    assert not pid_alive(child.pid)


def test_group_members_are_the_live_processes_of_the_group() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             start_new_session=True)
    try:
        assert group_members(child.pid) == [child.pid]
        assert os.getpid() not in group_members(child.pid)
    finally:
        child.kill()
        child.wait(timeout=10)
    assert group_members(child.pid) == []
