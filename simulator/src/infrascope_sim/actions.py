"""Actions: the Cloud API's record of every change, pollable until it finishes.

Every write answers an action ``{id, command, status, progress, started, finished,
resources, error}``. The simulator applies a change to the fleet when it is requested
and keeps the action ``running`` for ``Settings.action_seconds`` of the simulator's
clock (0 by default: finished at once, ``success``, progress 100). While an action
runs, its server is ``locked`` and shows the action's transitional status
(``stopping``, ``starting``, ``migrating``, ``initializing``). Status and progress are
computed from the clock when asked, so a test with a fake clock sees them move
deterministically.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass(frozen=True)
class Action:
    id: int
    project: str
    command: str
    started: float
    seconds: float
    resources: tuple[tuple[int, str], ...]  # (id, type), as the API lists them
    server_status: str | None = None  # the server's status while the action runs

    @property
    def ends(self) -> float:
        return self.started + self.seconds

    def running(self, now: float) -> bool:
        return now < self.ends

    def status(self, now: float) -> str:
        return "running" if self.running(now) else "success"

    def to_api(self, now: float) -> dict[str, Any]:
        running = self.running(now)
        progress = 100 if not running else max(
            0, min(99, int(100 * (now - self.started) / self.seconds)))
        return {
            "id": self.id, "command": self.command, "status": self.status(now),
            "progress": progress, "started": iso(self.started),
            "finished": None if running else iso(self.ends),
            "resources": [{"id": rid, "type": rtype} for rid, rtype in self.resources],
            "error": None,
        }


@dataclass
class ActionLog:
    """The actions of one simulator instance (every project), by id and by server."""

    actions: dict[int, Action] = field(default_factory=dict)
    by_server: dict[int, list[Action]] = field(default_factory=dict)
    _next_id: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, project: str, command: str, started: float, seconds: float,
               resources: list[tuple[int, str]], server_status: str | None = None) -> Action:
        with self._lock:
            action = Action(self._next_id, project, command, started, seconds,
                            tuple(resources), server_status)
            self._next_id += 1
            self.actions[action.id] = action
            for rid, rtype in resources:
                if rtype == "server":
                    self.by_server.setdefault(rid, []).append(action)
            return action

    def get(self, project: str, action_id: int) -> Action | None:
        action = self.actions.get(action_id)
        return action if action is not None and action.project == project else None

    def of_server(self, server_id: int) -> list[Action]:
        return list(self.by_server.get(server_id, ()))

    def running_on(self, server_id: int, now: float) -> Action | None:
        """The latest action still running on the server (it is locked), if any."""
        running = [a for a in self.by_server.get(server_id, ()) if a.running(now)]
        return running[-1] if running else None


__all__ = ["Action", "ActionLog"]
