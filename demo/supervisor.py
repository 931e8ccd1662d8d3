"""The demo's process supervisor: each component by pid, restarted when it dies.

``make demo`` runs seven long-lived programs. A process runner that stops everything
when one of them exits (as honcho does) turns a crash of one component into the loss of
the whole stack; this one reports the component that died by name, with its log, and
starts it again — a bounded number of times, with a short backoff — while the others
keep running. Standard library only.

- Each component is started in its own session (so its process group is its pid, and a
  helper it runs — ``demo/after.py``'s one-off steps — belongs to that group), with its
  output appended to its own log file.
- A monitor thread polls the components. One that exits while the supervisor runs is
  reported on stderr (``<name> (pid N) exited with ...; log: PATH``) and restarted after
  ``BACKOFF[n]`` seconds, at most ``max_restarts`` times in a row; a run of
  ``stable_after`` seconds or more resets the count. After the last restart it is given
  up (:meth:`Supervisor.given_up` says which and why); the rest keeps running.
- :meth:`Supervisor.stop`: SIGTERM to every component's process group, SIGKILL to the
  groups still there after ``timeout`` seconds; nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infrascope_core.procfs import group_members

BACKOFF = (1.0, 2.0, 4.0)  # seconds before the 1st, 2nd, 3rd restart in a row
MAX_RESTARTS = 3
STABLE_AFTER = 60.0  # a component that ran this long before dying starts a new count
POLL = 0.2


@dataclass
class Component:
    """One supervised program: its command, its log, and its current process."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0  # restarts in a row (reset by a stable run)
    restarts_total: int = 0
    restart_at: float | None = None  # when a pending restart is due
    given_up: str | None = None  # why it is no longer restarted
    pids: list[int] = field(default_factory=list)  # every pid it had, oldest first

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class Supervisor:
    """Starts components, restarts the ones that die, stops them all by pid."""

    def __init__(self, report: Callable[[str], None], *, max_restarts: int = MAX_RESTARTS,
                 backoff: Sequence[float] = BACKOFF, stable_after: float = STABLE_AFTER,
                 on_change: Callable[[], None] | None = None) -> None:
        self.report = report
        self.max_restarts = max_restarts
        self.backoff = tuple(backoff)
        self.stable_after = stable_after
        self.on_change = on_change  # called (from the monitor thread) after a restart
        self.components: dict[str, Component] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None

    # -- set-up -----------------------------------------------------------------------
    def add(self, name: str, argv: Sequence[str], log: Path,
            env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        if name in self.components:
            raise ValueError(f"two components named {name}")
        self.components[name] = Component(name, list(argv), log,
                                          dict(env) if env is not None else None, cwd)

    def start(self) -> None:
        """Start every component (in the order added) and the monitor thread."""
        with self._lock:
            for component in self.components.values():
                self._spawn(component)
        self._monitor = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._monitor.start()

    def _spawn(self, component: Component) -> None:
        with open(component.log, "ab") as out:
            component.proc = subprocess.Popen(
                component.argv, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=component.env, cwd=component.cwd,
                start_new_session=True)
        component.started_at = time.monotonic()
        component.restart_at = None
        component.pids.append(component.proc.pid)

    # -- state ------------------------------------------------------------------------
    def pids(self) -> dict[str, int]:
        """The current pid of each component that runs (or is about to be restarted)."""
        with self._lock:
            return {c.name: c.pid for c in self.components.values() if c.pid is not None}

    def all_pids(self) -> list[int]:
        """Every pid any component ever had."""
        with self._lock:
            return [pid for c in self.components.values() for pid in c.pids]

    def given_up(self) -> str | None:
        """Why a component is down for good (no restart left), or None."""
        with self._lock:
            for c in self.components.values():
                if c.given_up:
                    return c.given_up
        return None

    def running(self, name: str) -> bool:
        with self._lock:
            proc = self.components[name].proc
            return proc is not None and proc.poll() is None

    # -- the monitor ------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stopping.wait(POLL):
            changed = False
            with self._lock:
                if self._stopping.is_set():
                    return
                for c in self.components.values():
                    changed |= self._check(c)
            if changed and self.on_change is not None:
                try:
                    self.on_change()
                except Exception as exc:  # noqa: BLE001 - the monitor must keep running
                    self.report(f"after a restart: {type(exc).__name__}: {exc}")

    def _check(self, c: Component) -> bool:
        """Handle one component's exit or pending restart; True when it was restarted."""
        now = time.monotonic()
        if c.restart_at is not None:
            if now < c.restart_at:
                return False
            self._spawn(c)
            self.report(f"{c.name} restarted (pid {c.pid}, restart {c.restarts} of "
                        f"{self.max_restarts}); log: {c.log}")
            return True
        if c.proc is None or c.given_up or c.proc.poll() is None:
            return False
        code = c.proc.returncode
        ran = now - c.started_at
        if ran >= self.stable_after:
            c.restarts = 0
        self.report(f"{c.name} (pid {c.proc.pid}) exited with {describe_exit(code)} after "
                    f"{ran:.1f} s; log: {c.log}")
        if c.restarts >= self.max_restarts:
            c.given_up = (f"{c.name} exited {c.restarts + 1} times in a row (last: "
                          f"{describe_exit(code)}); not restarted again; log: {c.log}")
            self.report(c.given_up)
            return False
        delay = self.backoff[min(c.restarts, len(self.backoff) - 1)]
        c.restarts += 1
        c.restarts_total += 1
        c.restart_at = now + delay
        self.report(f"restarting {c.name} in {delay:g} s (restart {c.restarts} of "
                    f"{self.max_restarts})")
        return False

    # -- stop -------------------------------------------------------------------------
    def stop(self, timeout: float = 10.0) -> list[str]:
        """SIGTERM to every component's process group, SIGKILL after ``timeout``.

        Returns the names of the components that had to be killed."""
        self._stopping.set()
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join()
        with self._lock:
            procs = [(c.name, c.proc) for c in reversed(self.components.values())
                     if c.proc is not None]
            for _, proc in procs:
                _signal_group(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            killed = []
            for name, proc in procs:
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    killed.append(name)
                    proc.kill()
                    proc.wait()
                # Anything the component started in its group goes with it, and is gone
                # when stop returns (a signal is delivered, not awaited).
                _signal_group(proc.pid, signal.SIGKILL)
                _wait_group_gone(proc.pid, time.monotonic() + GROUP_EXIT_SECONDS)
            return killed


GROUP_EXIT_SECONDS = 5.0
"""How long stop waits for a SIGKILLed group's processes to die (they do at once on an
idle machine; a loaded one can take a scheduling round or two)."""


def _wait_group_gone(pgid: int, deadline: float) -> None:
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass
