"""Fault injection, configurable per endpoint at start-up and at run time.

A fault has a kind, a scope (``api`` and a ``path`` glob, optionally one
``project``), and optional limits: ``probability`` (0..1, default 1),
``count`` (apply to the next N matching requests, then expire) and
``duration`` (seconds from creation, then expire).

Kinds and their parameters:

==================== ==========================================================
``latency``          ``ms``: added delay before the response (others may follow)
``error``            ``status`` (500, 502, 503 or 504): error in the documented body
``rate_limit``       429 ``rate_limit_exceeded`` (Cloud) / 403 ``RATE_LIMIT_EXCEEDED``
                     (Robot) regardless of the bucket: a 429 storm
``hang``             ``seconds`` (default 3600): never answers within a client timeout
``malformed_json``   200 with a truncated JSON body
``broken_pagination`` ``after_page`` (default 1); ``mode`` ``error`` (later pages
                     fail with 503) or ``truncate`` (that page claims to be the last)
``wrong_content_type`` 200 with an HTML body and ``text/html``, as a captive proxy sends
``revoked_token``    401 ``unauthorized`` (Cloud) / 401 ``UNAUTHORIZED`` (Robot): the
                     token was deleted in the Console, the Robot password changed
                     (scope it to one ``project`` to revoke that project's token)
``forbidden``        403 ``forbidden`` (Cloud) / 403 ``FORBIDDEN`` (Robot): the
                     credentials are valid but may not read this resource
==================== ==========================================================
"""

from __future__ import annotations

import fnmatch
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = (
    "latency", "error", "rate_limit", "hang", "malformed_json", "broken_pagination",
    "wrong_content_type", "revoked_token", "forbidden",
)
APIS = ("cloud", "robot", "agents", "*")
_ERROR_STATUSES = (500, 502, 503, 504)


class FaultError(ValueError):
    pass


@dataclass
class Fault:
    kind: str
    api: str = "*"
    path: str = "*"
    project: str | None = None
    probability: float = 1.0
    count: int | None = None
    duration: float | None = None
    ms: float = 0.0
    status: int = 503
    seconds: float = 3600.0
    after_page: int = 1
    mode: str = "error"
    id: int = 0
    created: float = 0.0
    applied: int = 0

    def validate(self) -> Fault:
        if self.kind not in KINDS:
            raise FaultError(f"unknown fault kind {self.kind!r} (known: {', '.join(KINDS)})")
        if self.api not in APIS:
            raise FaultError(f"unknown api {self.api!r} (known: {', '.join(APIS)})")
        if not 0.0 <= self.probability <= 1.0:
            raise FaultError("probability must be between 0 and 1")
        if self.kind == "error" and self.status not in _ERROR_STATUSES:
            raise FaultError(f"error status must be one of {_ERROR_STATUSES}")
        if self.kind == "broken_pagination" and self.mode not in ("error", "truncate"):
            raise FaultError("broken_pagination mode must be 'error' or 'truncate'")
        if self.kind == "broken_pagination" and self.after_page < 1:
            raise FaultError("after_page must be at least 1")
        if self.count is not None and self.count < 1:
            raise FaultError("count must be at least 1")
        if self.ms < 0 or self.seconds < 0:
            raise FaultError("delays must not be negative")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_FIELD_TYPES: dict[str, Callable[[str], Any]] = {
    "kind": str, "api": str, "path": str, "project": str, "probability": float,
    "count": int, "duration": float, "ms": float, "status": int, "seconds": float,
    "after_page": int, "mode": str,
}


def fault_from_dict(data: dict[str, Any]) -> Fault:
    if not isinstance(data, dict):
        raise FaultError("a fault must be a JSON object")
    unknown = set(data) - set(_FIELD_TYPES)
    if unknown:
        raise FaultError(f"unknown fault fields {sorted(unknown)}")
    if "kind" not in data:
        raise FaultError("a fault needs a 'kind'")
    try:
        values: dict[str, Any] = {
            k: (None if v is None else _FIELD_TYPES[k](v)) for k, v in data.items()
        }
    except (TypeError, ValueError) as exc:
        raise FaultError(f"bad fault field value: {exc}") from exc
    return Fault(**values).validate()


def parse_fault_spec(spec: str) -> Fault:
    """Parse the command-line form ``kind=latency,api=cloud,path=/v1/servers*,ms=20``."""
    data: dict[str, Any] = {}
    for part in spec.split(","):
        if "=" not in part:
            raise FaultError(f"bad fault spec {spec!r}: expected key=value pairs")
        key, value = part.split("=", 1)
        data[key.strip()] = value.strip()
    return fault_from_dict(data)


@dataclass
class FaultSet:
    clock: Callable[[], float] = field(default=time.time, repr=False)
    rng: random.Random = field(default_factory=lambda: random.Random(1234), repr=False)
    faults: list[Fault] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1), repr=False)

    def add(self, fault: Fault) -> Fault:
        fault.validate()
        fault.id = next(self._ids)
        fault.created = self.clock()
        self.faults.append(fault)
        return fault

    def remove(self, fault_id: int) -> bool:
        before = len(self.faults)
        self.faults = [f for f in self.faults if f.id != fault_id]
        return len(self.faults) != before

    def active(self, fault: Fault) -> bool:
        return any(f is fault for f in self.faults)

    def clear(self) -> None:
        self.faults = []

    def _expire(self) -> None:
        now = self.clock()
        self.faults = [
            f for f in self.faults
            if (f.count is None or f.applied < f.count)
            and (f.duration is None or now < f.created + f.duration)
        ]

    def matching(self, api: str, path: str, project: str | None) -> list[Fault]:
        """Faults that apply to this request (each counted as applied once)."""
        self._expire()
        hits = []
        for f in self.faults:
            if f.api not in ("*", api):
                continue
            if not fnmatch.fnmatchcase(path, f.path):
                continue
            if f.project is not None and f.project != project:
                continue
            if f.probability < 1.0 and self.rng.random() >= f.probability:
                continue
            f.applied += 1
            hits.append(f)
        return hits
