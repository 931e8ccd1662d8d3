"""``systemd``: service units with their states, CPU and memory.

Units come from ``systemctl list-units --type=service --all`` (``--systemd.systemctl``
picks the binary). ``--output=json`` is tried first (systemd's JSON tables);
when that fails or does not print a JSON array — older systemctl rejects the
option or ignores it and prints its table — the plain table
(``--no-legend --plain --full --no-pager``) is parsed instead, and the collector
remembers that this systemctl has no JSON so later scrapes run one command.

Exposed per unit (``kind="systemd"``, ``service`` = unit name):
``infrascope_service_info{state=<active state>, sub_state}``, and from the
unit's cgroup (``system.slice/<unit>``, ``system.slice/system-<template>.slice/<unit>``),
when readable, ``infrascope_service_cpu_seconds_total`` and
``infrascope_service_memory_bytes``. Units whose load state is ``not-found``
(names merely referenced by other units) are skipped.

systemctl missing, failing ("System has not been booted with systemd") or
hanging fails this collector only, with one log line from the registry saying
why (repeated only when the reason changes). A host without systemd or without
systemctl (:class:`SystemdAbsent`) is said so once at start. The command runs in
its own process group, killed when it outlives :data:`COMMAND_BUDGET` of the collector timeout.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.core import Metric

from ..cgroups import Cgroups
from ..discovery import add_usage, service_families
from ..registry import Collector, Option, Settings, SourceAbsent, add, register

log = logging.getLogger("infrascope_agent.systemd")

COMMAND_BUDGET = 0.6  # share of the collector timeout both systemctl runs may take
JSON_ARGS = ("list-units", "--type=service", "--all", "--output=json", "--no-pager")
PLAIN_ARGS = ("list-units", "--type=service", "--all", "--no-legend", "--plain", "--full",
              "--no-pager")
MARKERS = ("●", "*", "×", "○")


class SystemdError(Exception):
    """systemctl could not be used; the message says why, for the log."""


class SystemctlUnusable(SystemdError):
    """systemctl is missing or hangs: running it again with other options cannot help."""


class SystemdAbsent(SystemctlUnusable, SourceAbsent):
    """This host does not run systemd, or has no systemctl."""


@dataclass(frozen=True)
class Unit:
    name: str
    load: str
    active: str
    sub: str


def parse_json_units(text: str) -> list[Unit]:
    """``systemctl list-units --output=json``: one array of {unit, load, active, sub, ...}."""
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("not a JSON array")
    units = []
    for row in data:
        if not isinstance(row, dict) or "unit" not in row:
            raise ValueError("array item without a unit")
        units.append(Unit(str(row["unit"]), str(row.get("load", "")),
                          str(row.get("active", "")), str(row.get("sub", ""))))
    return units


def parse_plain_units(text: str) -> list[Unit]:
    """``--no-legend --plain``: ``UNIT LOAD ACTIVE SUB DESCRIPTION`` per line.

    A leading status marker (``●`` for failed or not-found units when ``--plain``
    does not drop it) is skipped; the description, which may contain spaces, is
    ignored.
    """
    units = []
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in MARKERS:
            parts = parts[1:]
        if len(parts) < 4:
            continue
        units.append(Unit(parts[0], parts[1], parts[2], parts[3]))
    return units


@register
class SystemdCollector(Collector):
    name = "systemd"
    help = "systemd service units (systemctl list-units) with CPU and memory"
    options = (Option("systemd.systemctl", "systemctl binary used by the systemd collector",
                      setting="systemctl", metavar="PATH"),)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.cgroups = Cgroups(settings.cgroupfs)
        self.json_supported: bool | None = None  # None: not known yet

    def _not_found(self) -> str:
        return f"systemctl not found: {self.settings.systemctl!r} (see --systemd.systemctl)"

    def absent(self) -> str | None:
        if not self._booted():
            return "this host is not running systemd (no /run/systemd/system)"
        if shutil.which(self.settings.systemctl) is None:
            return self._not_found()
        return None

    def _run(self, args: tuple[str, ...], deadline: float) -> str:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise SystemctlUnusable("systemctl: no time left in the collector budget")
        env = dict(os.environ, LC_ALL="C", SYSTEMD_COLORS="0", SYSTEMD_PAGER="")
        try:
            proc = subprocess.Popen([self.settings.systemctl, *args], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                    start_new_session=True)
        except FileNotFoundError as exc:
            raise SystemdAbsent(self._not_found()) from exc
        except PermissionError as exc:
            raise SystemctlUnusable(f"systemctl {self.settings.systemctl!r} is not "
                               f"executable") from exc
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.kill()
            proc.communicate()
            raise SystemctlUnusable(f"systemctl {' '.join(args)} did not finish within "
                               f"{timeout:.1f}s") from exc
        if proc.returncode != 0:
            reason = err.decode("utf-8", "replace").strip().splitlines()
            raise SystemdError(f"systemctl {' '.join(args)} exited {proc.returncode}: "
                               f"{reason[0] if reason else 'no message'}")
        return out.decode("utf-8", "replace")

    def _booted(self) -> bool:
        """sd_booted(): systemd is the running init iff /run/systemd/system exists.

        Checked before spawning systemctl so that hosts without systemd (containers,
        other inits) do not pay two process spawns per scrape only to be told so. An
        explicitly configured systemctl (--systemd.systemctl) is always run.
        """
        if self.settings.systemctl != "systemctl":
            return True
        return os.path.isdir(os.path.join(self.settings.rootfs, "run/systemd/system"))

    def list_units(self) -> list[Unit]:
        if not self._booted():
            raise SystemdAbsent("this host is not running systemd (no /run/systemd/system)")
        deadline = time.monotonic() + max(0.05, self.settings.collector_timeout * COMMAND_BUDGET)
        if self.json_supported is not False:
            try:
                units = parse_json_units(self._run(JSON_ARGS, deadline))
                self.json_supported = True
                return units
            except SystemctlUnusable:
                raise
            except (SystemdError, ValueError) as exc:
                if self.json_supported:  # JSON worked before: a real failure, not old systemctl
                    if isinstance(exc, SystemdError):
                        raise
                    raise SystemdError(f"systemctl JSON output unparsable: {exc}") from exc
                log.debug("systemctl JSON output unusable, trying the plain table: %s", exc)
        units = parse_plain_units(self._run(PLAIN_ARGS, deadline))
        self.json_supported = False
        return units

    def collect(self) -> Iterable[Metric]:
        units = self.list_units()
        info, cpu, memory = service_families()
        seen: set[str] = set()
        for unit in units:
            if unit.load == "not-found" or not unit.name.endswith(".service"):
                continue
            if unit.name in seen:
                continue
            seen.add(unit.name)
            add(info, {"kind": "systemd", "service": unit.name, "state": unit.active,
                       "sub_state": unit.sub}, 1)
            if unit.active in ("active", "reloading", "activating", "deactivating"):
                add_usage(cpu, memory, "systemd", unit.name, self.cgroups.unit_usage(unit.name))
        return [info, cpu, memory]
