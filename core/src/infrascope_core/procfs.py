"""What Linux's ``/proc`` says about a process: alive (not a zombie), its state and
process group, its status fields. One reader for the demo's supervisor, ``make demo``'s
signal handling and the tests that check every process stopped."""

from __future__ import annotations

import os


def stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first, then the
    parent pid, the process group, ...); None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()  # the name may hold ") "
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs: a zombie is gone for every purpose of ours."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = stat_fields(int(entry.name))
        if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as a mapping (``Name``, ``State``, ``SigBlk``, ...), values
    stripped; empty once the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as fh:
            return {k: v.strip() for k, sep, v in (line.partition(":") for line in fh) if sep}
    except OSError:
        return {}
