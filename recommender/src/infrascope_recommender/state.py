"""Decisions and run history in SQLite (stdlib ``sqlite3``), safe across threads and processes.

Why SQLite: the recommender is one process next to Prometheus; a single file that
survives restarts, needs no server, and is atomic per transaction is exactly enough.

Durability and concurrency:

* WAL journal (readers never block the writer), ``synchronous=NORMAL`` (a commit
  survives a killed process; only a power loss may drop the last commits, never
  corrupt the file), ``busy_timeout`` so concurrent writers wait instead of failing.
* Every write is one ``BEGIN IMMEDIATE`` transaction: the write lock is taken up
  front, so two processes deciding at once serialise instead of one failing with
  "database is locked" half-way through a read-modify-write.
* Inside a process one connection is shared behind a lock (FastAPI serves sync
  endpoints from a thread pool).

Schema migrations are an ordered list of functions; ``PRAGMA user_version`` holds how
many have been applied. Never edit a released migration: append a new one.

Statuses follow the issue: ``pending`` (shown, counts towards the savings total),
``accepted`` (the operator will do it) and ``dismissed`` (with a reason and an optional
expiry after which the recommendation may come back). A regeneration
(:meth:`Store.record_run`) never touches an accepted or dismissed decision.

Times are unix seconds (``float``) in the database and in :class:`StoredRecommendation`;
money is stored as integer cents so SQL sums are exact and converted back to
:class:`~decimal.Decimal` euros.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from .model import (
    EXCLUSION_CAUSES,
    STATUSES,
    Exclusion,
    ExclusionCause,
    Recommendation,
    RunResult,
    ServerKey,
    ServerRef,
    Status,
    cents,
)
from .rules import kinds

BUSY_TIMEOUT_MS = 30_000
_List = list  # Store.list shadows the builtin inside the class body
SYSTEM_ACTOR = "recommender"  # decided_by of the changes the recommender makes itself


class StateError(Exception):
    """The state file cannot be used (newer schema, not a database, ...)."""


class NotFound(KeyError):
    """No recommendation with this id."""

    def __init__(self, rec_id: str) -> None:
        super().__init__(rec_id)
        self.rec_id = rec_id

    def __str__(self) -> str:
        return f"no recommendation with id {self.rec_id!r}"


class Conflict(Exception):
    """The change would break an invariant (e.g. a server in two pending recommendations)."""


def to_cents(value: Decimal) -> int:
    return int(cents(value) * 100)


def from_cents(value: int | None) -> Decimal:
    return (Decimal(value or 0) / 100).quantize(Decimal("0.01"))


def _epoch(value: datetime | float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:  # naive: UTC, as the API documents
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)


# --- migrations --------------------------------------------------------------------------

def _migration_1_initial(conn: sqlite3.Connection) -> None:
    """Recommendations with their servers, and the run history."""
    conn.execute("""
        CREATE TABLE recommendations (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            action TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'dismissed')),
            data TEXT NOT NULL,                       -- Recommendation.to_dict() as JSON
            monthly_savings_cents INTEGER NOT NULL,   -- negative for upgrades
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            decided_at REAL,
            decided_by TEXT,
            reason TEXT,                              -- dismiss reason or accept note
            dismissed_until REAL                      -- NULL: dismissed for good
        )""")
    conn.execute("""
        CREATE TABLE recommendation_servers (
            recommendation_id TEXT NOT NULL
                REFERENCES recommendations(id) ON DELETE CASCADE,
            source TEXT NOT NULL,
            server_id TEXT NOT NULL,
            name TEXT NOT NULL,
            project TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (recommendation_id, source, server_id)
        )""")
    conn.execute("CREATE INDEX recommendation_servers_key "
                 "ON recommendation_servers (source, server_id)")
    conn.execute("""
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            started_at REAL NOT NULL,
            duration_seconds REAL NOT NULL,
            generated INTEGER NOT NULL DEFAULT 0,
            new INTEGER NOT NULL DEFAULT 0,
            stale INTEGER NOT NULL DEFAULT 0,
            pending INTEGER NOT NULL DEFAULT 0,
            pending_savings_cents INTEGER NOT NULL DEFAULT 0,
            error TEXT                                -- NULL: the run succeeded
        )""")


def _migration_2_decision_log(conn: sqlite3.Connection) -> None:
    """An audit log of every decision, and enough run detail for reports from the state."""
    conn.execute("""
        CREATE TABLE decisions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            recommendation_id TEXT NOT NULL,  -- no foreign key: the log outlives stale rows
            status TEXT NOT NULL,             -- the status it moved to
            decided_at REAL NOT NULL,
            decided_by TEXT,
            reason TEXT,
            dismissed_until REAL
        )""")
    conn.execute("CREATE INDEX decisions_recommendation ON decisions (recommendation_id, id)")
    # Decisions made before the log existed become its first entries.
    conn.execute("""
        INSERT INTO decisions (recommendation_id, status, decided_at, decided_by, reason,
                               dismissed_until)
        SELECT id, status, decided_at, decided_by, reason, dismissed_until
        FROM recommendations WHERE status != 'pending' AND decided_at IS NOT NULL
        ORDER BY decided_at""")
    conn.execute("CREATE INDEX recommendations_status ON recommendations (status, kind)")
    for column in ("reopened INTEGER NOT NULL DEFAULT 0", "queries INTEGER",
                   "servers INTEGER", "fleet_monthly_cost_cents INTEGER",
                   "price_mode TEXT", "exclusions TEXT"):
        conn.execute(f"ALTER TABLE runs ADD COLUMN {column}")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _migration_1_initial,
    _migration_2_decision_log,
)
SCHEMA_VERSION = len(MIGRATIONS)


# --- records -----------------------------------------------------------------------------

@dataclass
class StoredRecommendation:
    """A recommendation as the state knows it: content plus decision."""

    recommendation: Recommendation
    status: Status = "pending"
    first_seen: float = 0.0
    last_seen: float = 0.0
    decided_at: float | None = None
    decided_by: str | None = None
    reason: str | None = None
    dismissed_until: float | None = None

    @property
    def id(self) -> str:
        return self.recommendation.id

    def to_dict(self) -> dict[str, Any]:
        """``Recommendation.to_dict()`` plus the decision, times as ISO 8601 UTC."""
        data = self.recommendation.to_dict()
        data.update(status=self.status, first_seen=iso(self.first_seen),
                    last_seen=iso(self.last_seen), decided_at=iso(self.decided_at),
                    decided_by=self.decided_by, reason=self.reason,
                    dismissed_until=iso(self.dismissed_until))
        return data


@dataclass
class Decision:
    recommendation_id: str
    status: Status
    decided_at: float
    decided_by: str | None = None
    reason: str | None = None
    dismissed_until: float | None = None


@dataclass
class RunRecord:
    id: int
    started_at: float
    duration_seconds: float
    generated: int = 0  # recommendations the engine produced
    new: int = 0  # ... of which not known before
    stale: int = 0  # pending ones removed (no longer generated, or displaced)
    reopened: int = 0  # dismissals that expired and came back
    pending: int = 0  # pending after the run
    pending_savings: Decimal = Decimal("0.00")  # monthly euros, after the run
    queries: int | None = None
    servers: int | None = None
    fleet_monthly_cost: Decimal | None = None
    price_mode: str | None = None
    exclusions: list[Exclusion] = field(default_factory=list)
    error: str | None = None

    @property
    def success(self) -> bool:
        return self.error is None


@dataclass
class Totals:
    count: int = 0
    monthly_savings: Decimal = Decimal("0.00")


@dataclass
class Summary:
    by_status: dict[str, Totals]  # every status, zero when none
    by_kind: dict[str, dict[str, Totals]]  # kind -> status -> totals, every kind and status
    last_run: RunRecord | None = None
    last_success: RunRecord | None = None

    @property
    def pending_savings(self) -> Decimal:
        return self.by_status["pending"].monthly_savings


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def exclusion_to_dict(item: Exclusion) -> dict[str, Any]:
    s = item.server
    return {"server": {"source": s.source, "server_id": s.server_id, "name": s.name,
                       "server_type": s.server_type, "location": s.location,
                       "project": s.project},
            "rule": item.rule, "reason": item.reason, "cause": item.cause}


def exclusion_from_dict(data: dict[str, Any]) -> Exclusion:
    s = data["server"]
    cause = data.get("cause")
    return Exclusion(ServerRef(s["source"], s["server_id"], s["name"], s["server_type"],
                               s["location"], s.get("project", "")),
                     data["rule"], data["reason"],
                     cause if cause in EXCLUSION_CAUSES else _legacy_cause(data["reason"]))


def _legacy_cause(reason: str) -> ExclusionCause:
    """The cause of an exclusion recorded before causes were stored, from its wording
    (the rules' own sentences of that time)."""
    if reason.startswith(("no Cloud type", "no orderable")):
        return "target"
    if reason.startswith(("no price known", "the server's core count is unknown",
                          "the server's memory size is unknown")):
        return "inventory"
    return "data"


# --- the store ---------------------------------------------------------------------------

class Store:
    """The state file. Thread-safe; several processes may open the same file."""

    def __init__(self, path: str | os.PathLike[str], *,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.RLock()
        self._writes = 0
        if self.path.parent and not self.path.parent.exists():
            raise StateError(f"state.path: directory {self.path.parent} does not exist")
        try:
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                         isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StateError(f"state.path: cannot open {self.path}: {exc}") from None
        try:
            self._configure()
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StateError(f"state.path: {self.path} is not a usable recommender "
                             f"database: {exc}") from None
        except StateError:
            self._conn.close()
            raise

    def _configure(self) -> None:
        c = self._conn
        c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StateError(f"state.path: {self.path} cannot use WAL (journal_mode={mode})")
        c.execute("PRAGMA synchronous = NORMAL")
        c.execute("PRAGMA foreign_keys = ON")

    def _migrate(self) -> None:
        with self._write() as c:
            version = c.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"state.path: {self.path} has schema version {version}, newer than this "
                    f"recommender understands ({SCHEMA_VERSION}); upgrade the recommender")
            for number in range(version, SCHEMA_VERSION):
                MIGRATIONS[number](c)
                c.execute(f"PRAGMA user_version = {number + 1}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on error."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            self._writes += 1

    def version(self) -> tuple[int, int]:
        """Changes whenever the content may have changed (this process or another one).

        ``PRAGMA data_version`` moves on commits by other connections, the counter on
        ours: readers (``/metrics``) cache what they derive until it moves.
        """
        with self._lock:
            return (int(self._conn.execute("PRAGMA data_version").fetchone()[0]),
                    self._writes)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot across several SELECTs."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    # --- regeneration --------------------------------------------------------------------

    def record_run(self, result: RunResult, now: float | None = None) -> int:
        """Merge one regeneration into the state and log the run; returns the run id.

        New ids become pending; pending ones get the new content; pending ones not
        generated again are removed (stale); accepted and dismissed ones keep their
        decision and content (only ``last_seen`` moves), except a dismissal whose expiry
        has passed and that is generated again: it comes back as pending.

        A server is in at most one pending recommendation, so totals never double-count:
        when pending ones share a server, a recommendation that is new (or back) in this
        run displaces one that was already pending; among equals the later one in the
        run's order wins. One transaction, batched statements (10,000 recommendations
        take well under a second).
        """
        now = self.clock() if now is None else now
        recs: dict[str, Recommendation] = {}
        for rec in result.recommendations:
            recs.setdefault(rec.id, rec)  # an id twice in one run: the first counts
        inserts: list[tuple[Any, ...]] = []
        refreshes: list[tuple[Any, ...]] = []
        reopens: list[tuple[Any, ...]] = []
        touches: list[tuple[Any, ...]] = []
        fresh: set[str] = set()  # new or back in this run
        with self._write() as c:
            known = {row[0]: (row[1], row[2]) for row in c.execute(
                "SELECT id, status, dismissed_until FROM recommendations")}
            stale_ids = [rec_id for rec_id, (status, _) in known.items()
                         if status == "pending" and rec_id not in recs]
            c.executemany("DELETE FROM recommendations WHERE id = ?",
                          [(rec_id,) for rec_id in stale_ids])
            for rec_id, rec in recs.items():
                state = known.get(rec_id)
                if state is not None and state[0] == "accepted" or (
                        state is not None and state[0] == "dismissed"
                        and (state[1] is None or state[1] > now)):
                    touches.append((now, rec_id))
                    continue
                data, savings = json.dumps(rec.to_dict()), to_cents(rec.savings)
                if state is None:
                    inserts.append((rec_id, rec.kind, rec.action, data, savings, now, now))
                    fresh.add(rec_id)
                elif state[0] == "pending":
                    refreshes.append((rec.kind, rec.action, data, savings, now, rec_id))
                else:  # dismissed, expired, generated again
                    reopens.append((rec.kind, rec.action, data, savings, now, now, rec_id))
                    fresh.add(rec_id)
            c.executemany(
                "INSERT INTO recommendations (id, kind, action, status, data, "
                "monthly_savings_cents, first_seen, last_seen) "
                "VALUES (?, ?, ?, 'pending', ?, ?, ?, ?)", inserts)
            c.executemany(
                "UPDATE recommendations SET kind = ?, action = ?, data = ?, "
                "monthly_savings_cents = ?, last_seen = ? WHERE id = ?", refreshes)
            c.executemany(
                "UPDATE recommendations SET status = 'pending', kind = ?, action = ?, "
                "data = ?, monthly_savings_cents = ?, first_seen = ?, last_seen = ?, "
                "decided_at = NULL, decided_by = NULL, reason = NULL, dismissed_until = NULL "
                "WHERE id = ?", reopens)
            c.executemany("UPDATE recommendations SET last_seen = ? WHERE id = ?", touches)
            for row in reopens:
                self._log(c, row[-1], "pending", now, SYSTEM_ACTOR,
                          "dismissal expired and the recommendation was generated again")
            rewritten = [row[-1] for row in refreshes] + [row[-1] for row in reopens]
            c.executemany("DELETE FROM recommendation_servers WHERE recommendation_id = ?",
                          [(rec_id,) for rec_id in rewritten])
            c.executemany(
                "INSERT OR IGNORE INTO recommendation_servers "
                "(recommendation_id, source, server_id, name, project) VALUES (?, ?, ?, ?, ?)",
                [(rec_id, s.source, s.server_id, s.name, s.project)
                 for rec_id in [row[0] for row in inserts] + rewritten
                 for s in recs[rec_id].servers])
            order = {rec_id: i for i, rec_id in enumerate(recs)}
            displaced = self._resolve_overlaps(
                c, lambda rec_id: (rec_id in fresh, order.get(rec_id, -1)))
            pending, savings_total = c.execute(
                "SELECT COUNT(*), COALESCE(SUM(monthly_savings_cents), 0) "
                "FROM recommendations WHERE status = 'pending'").fetchone()
            fleet = result.fleet
            cursor = c.execute(
                "INSERT INTO runs (started_at, duration_seconds, generated, new, stale, "
                "reopened, pending, pending_savings_cents, queries, servers, "
                "fleet_monthly_cost_cents, price_mode, exclusions) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (result.started_at, result.duration_seconds, len(recs), len(inserts),
                 len(stale_ids) + displaced, len(reopens), pending, savings_total,
                 fleet.queries, len(fleet.servers), to_cents(fleet.costs.total),
                 fleet.price_mode,
                 json.dumps([exclusion_to_dict(e) for e in result.exclusions])))
            return int(cursor.lastrowid or 0)

    @staticmethod
    def _resolve_overlaps(c: sqlite3.Connection,
                          rank: Callable[[str], tuple[bool, int]]) -> int:
        """Remove pending recommendations sharing a server with a higher-ranked one."""
        conflicted = [row[0] for row in c.execute(
            "SELECT DISTINCT s.recommendation_id FROM recommendation_servers s "
            "JOIN recommendations r ON r.id = s.recommendation_id "
            "WHERE r.status = 'pending' AND (s.source, s.server_id) IN ("
            "  SELECT s2.source, s2.server_id FROM recommendation_servers s2 "
            "  JOIN recommendations r2 ON r2.id = s2.recommendation_id "
            "  WHERE r2.status = 'pending' GROUP BY s2.source, s2.server_id "
            "  HAVING COUNT(*) > 1)")]
        if not conflicted:
            return 0
        servers: dict[str, set[tuple[str, str]]] = {}
        for rec_id in conflicted:
            servers[rec_id] = {(row[0], row[1]) for row in c.execute(
                "SELECT source, server_id FROM recommendation_servers "
                "WHERE recommendation_id = ?", (rec_id,))}
        claimed: set[tuple[str, str]] = set()
        removed = []
        for rec_id in sorted(conflicted, key=rank, reverse=True):
            if servers[rec_id] & claimed:
                removed.append(rec_id)
            else:
                claimed |= servers[rec_id]
        c.executemany("DELETE FROM recommendations WHERE id = ?", [(r,) for r in removed])
        return len(removed)

    def record_failure(self, started_at: float, duration_seconds: float, error: str,
                       queries: int | None = None) -> int:
        """Log a run that failed (Prometheus unreachable, ...); the decisions stay as they are."""
        with self._write() as c:
            cursor = c.execute(
                "INSERT INTO runs (started_at, duration_seconds, error, queries) "
                "VALUES (?, ?, ?, ?)", (started_at, duration_seconds, error or "unknown error",
                                        queries))
            return int(cursor.lastrowid or 0)

    @staticmethod
    def _overlapping_pending(c: sqlite3.Connection, rec_id: str,
                             keys: Sequence[ServerKey]) -> _List[str]:
        if not keys:
            return []
        match = " OR ".join("(s.source = ? AND s.server_id = ?)" for _ in keys)
        args: _List[Any] = [rec_id]
        for key in keys:
            args += [key.source, key.server_id]
        return [row[0] for row in c.execute(
            "SELECT DISTINCT r.id FROM recommendations r JOIN recommendation_servers s "
            "ON s.recommendation_id = r.id WHERE r.status = 'pending' AND r.id != ? "
            f"AND ({match})", args)]

    # --- decisions -----------------------------------------------------------------------

    @staticmethod
    def _log(c: sqlite3.Connection, rec_id: str, status: str, now: float, by: str | None,
             reason: str | None, until: float | None = None) -> None:
        c.execute("INSERT INTO decisions (recommendation_id, status, decided_at, decided_by, "
                  "reason, dismissed_until) VALUES (?, ?, ?, ?, ?, ?)",
                  (rec_id, status, now, by, reason, until))

    def _decide(self, rec_id: str, status: Status, by: str | None, reason: str | None,
                until: float | None, now: float | None) -> StoredRecommendation:
        now = self.clock() if now is None else now
        with self._write() as c:
            row = c.execute("SELECT id FROM recommendations WHERE id = ?", (rec_id,)).fetchone()
            if row is None:
                raise NotFound(rec_id)
            c.execute("UPDATE recommendations SET status = ?, decided_at = ?, decided_by = ?, "
                      "reason = ?, dismissed_until = ? WHERE id = ?",
                      (status, now, by, reason, until, rec_id))
            self._log(c, rec_id, status, now, by, reason, until)
            return self._get(c, rec_id)

    def accept(self, rec_id: str, by: str | None = None, note: str | None = None,
               now: float | None = None) -> StoredRecommendation:
        """Mark as accepted (the operator will act on it). Allowed from any status."""
        return self._decide(rec_id, "accepted", by or None, note or None, None, now)

    def dismiss(self, rec_id: str, reason: str, until: datetime | float | None = None,
                by: str | None = None, now: float | None = None) -> StoredRecommendation:
        """Dismiss with a reason; after ``until`` (if given) a regeneration may bring it back."""
        if not reason or not reason.strip():
            raise ValueError("reason: a dismissal needs a reason")
        now_value = self.clock() if now is None else now
        until_epoch = _epoch(until)
        if until_epoch is not None and until_epoch <= now_value:
            raise ValueError("until: must be in the future")
        return self._decide(rec_id, "dismissed", by or None, reason.strip(), until_epoch,
                            now_value)

    def reopen(self, rec_id: str, by: str | None = None, note: str | None = None,
               now: float | None = None) -> StoredRecommendation:
        """Undo a decision: back to pending, unless a server is now in another pending one."""
        now = self.clock() if now is None else now
        with self._write() as c:
            current = self._get(c, rec_id)
            if current.status != "pending":
                others = self._overlapping_pending(c, rec_id, current.recommendation.keys)
                if others:
                    raise Conflict(f"cannot reopen {rec_id}: its servers are in pending "
                                   f"recommendation {', '.join(sorted(others))}")
                c.execute("UPDATE recommendations SET status = 'pending', decided_at = NULL, "
                          "decided_by = NULL, reason = NULL, dismissed_until = NULL "
                          "WHERE id = ?", (rec_id,))
                self._log(c, rec_id, "pending", now, by or None, note or None)
            return self._get(c, rec_id)

    # --- reading -------------------------------------------------------------------------

    _COLUMNS = ("data, status, first_seen, last_seen, decided_at, decided_by, reason, "
                "dismissed_until")

    @staticmethod
    def _row(row: Sequence[Any]) -> StoredRecommendation:
        return StoredRecommendation(Recommendation.from_dict(json.loads(row[0])), row[1],
                                    row[2], row[3], row[4], row[5], row[6], row[7])

    def _get(self, c: sqlite3.Connection, rec_id: str) -> StoredRecommendation:
        row = c.execute(f"SELECT {self._COLUMNS} FROM recommendations WHERE id = ?",
                        (rec_id,)).fetchone()
        if row is None:
            raise NotFound(rec_id)
        return self._row(row)

    def get(self, rec_id: str) -> StoredRecommendation:
        with self._lock:
            return self._get(self._conn, rec_id)

    def find(self, rec_id: str) -> StoredRecommendation | None:
        try:
            return self.get(rec_id)
        except NotFound:
            return None

    def list(self, status: str | None = None, kind: str | None = None,
             source: str | None = None, project: str | None = None,
             server: str | None = None) -> _List[StoredRecommendation]:
        """Filtered, largest monthly savings first.

        ``server`` matches a server key (``cloud/42``) or a server name.
        """
        where: _List[str] = []
        args: _List[Any] = []
        if status is not None:
            if status not in STATUSES:
                raise ValueError(f"status: expected one of {', '.join(STATUSES)}")
            where.append("r.status = ?")
            args.append(status)
        if kind is not None:
            if kind not in kinds():
                raise ValueError(f"kind: expected one of {', '.join(kinds())}")
            where.append("r.kind = ?")
            args.append(kind)
        server_match: _List[str] = []
        if source is not None:
            server_match.append("s.source = ?")
            args.append(source)
        if project is not None:
            server_match.append("s.project = ?")
            args.append(project)
        if server is not None:
            source_part, _, id_part = server.partition("/")
            if id_part and source_part in ("cloud", "dedicated"):
                server_match.append("((s.source = ? AND s.server_id = ?) OR s.name = ?)")
                args += [source_part, id_part, server]
            else:
                server_match.append("s.name = ?")
                args.append(server)
        if server_match:
            where.append("EXISTS (SELECT 1 FROM recommendation_servers s WHERE "
                         "s.recommendation_id = r.id AND " + " AND ".join(server_match) + ")")
        sql = (f"SELECT {self._COLUMNS} FROM recommendations r"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY r.monthly_savings_cents DESC, r.id")
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [self._row(row) for row in rows]

    def statuses(self) -> dict[str, StoredRecommendation]:
        """Every recommendation by id (for joining a fresh run with its decisions)."""
        return {item.id: item for item in self.list()}

    def pending_by_server(self) -> dict[ServerKey, str]:
        """Server key -> id of the pending recommendation that names it."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT s.source, s.server_id, r.id FROM recommendation_servers s "
                "JOIN recommendations r ON r.id = s.recommendation_id "
                "WHERE r.status = 'pending'").fetchall()
        return {ServerKey(row[0], row[1]): row[2] for row in rows}

    def decisions(self, rec_id: str | None = None) -> _List[Decision]:
        """The audit log, oldest first."""
        sql = ("SELECT recommendation_id, status, decided_at, decided_by, reason, "
               "dismissed_until FROM decisions")
        args: tuple[Any, ...] = ()
        if rec_id is not None:
            sql += " WHERE recommendation_id = ?"
            args = (rec_id,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY id", args).fetchall()
        return [Decision(*row) for row in rows]

    _RUN_COLUMNS = ("id, started_at, duration_seconds, generated, new, stale, reopened, "
                    "pending, pending_savings_cents, queries, servers, "
                    "fleet_monthly_cost_cents, price_mode, exclusions, error")

    @staticmethod
    def _run(row: Sequence[Any]) -> RunRecord:
        return RunRecord(
            id=row[0], started_at=row[1], duration_seconds=row[2], generated=row[3],
            new=row[4], stale=row[5], reopened=row[6], pending=row[7],
            pending_savings=from_cents(row[8]), queries=row[9], servers=row[10],
            fleet_monthly_cost=from_cents(row[11]) if row[11] is not None else None,
            price_mode=row[12],
            exclusions=[exclusion_from_dict(e) for e in json.loads(row[13] or "[]")],
            error=row[14])

    def runs(self, limit: int = 20, success: bool | None = None) -> _List[RunRecord]:
        """The most recent runs first."""
        where = ""
        if success is True:
            where = " WHERE error IS NULL"
        elif success is False:
            where = " WHERE error IS NOT NULL"
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {self._RUN_COLUMNS} FROM runs{where} ORDER BY id DESC LIMIT ?",
                (limit,)).fetchall()
        return [self._run(row) for row in rows]

    def run(self, run_id: int) -> RunRecord:
        with self._lock:
            row = self._conn.execute(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE id = ?",
                                     (run_id,)).fetchone()
        if row is None:
            raise KeyError(f"no run with id {run_id}")
        return self._run(row)

    def last_run(self, success: bool | None = None) -> RunRecord | None:
        runs = self.runs(1, success)
        return runs[0] if runs else None

    def summary(self) -> Summary:
        by_status: dict[str, Totals] = {status: Totals() for status in STATUSES}
        by_kind: dict[str, dict[str, Totals]] = {
            kind: {status: Totals() for status in STATUSES} for kind in kinds()}
        with self._read() as c:
            rows = c.execute(
                "SELECT kind, status, COUNT(*), COALESCE(SUM(monthly_savings_cents), 0) "
                "FROM recommendations GROUP BY kind, status").fetchall()
            last = c.execute(f"SELECT {self._RUN_COLUMNS} FROM runs ORDER BY id DESC "
                             "LIMIT 1").fetchone()
            good = c.execute(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE error IS NULL "
                             "ORDER BY id DESC LIMIT 1").fetchone()
        for kind, status, count, savings in rows:
            totals = by_status.setdefault(status, Totals())
            totals.count += count
            totals.monthly_savings += from_cents(savings)
            by_kind.setdefault(kind, {s: Totals() for s in STATUSES})[status] = Totals(
                count, from_cents(savings))
        return Summary(by_status, by_kind, self._run(last) if last else None,
                       self._run(good) if good else None)

    def integrity_check(self) -> str:
        with self._lock:
            return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])
