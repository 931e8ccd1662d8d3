"""The long-running recommender: regeneration, the last loaded fleet, readiness, schedule.

:class:`RecommenderService` glues the pieces together and is what the API, /metrics and
the CLI talk to. It takes its inputs as plain callables so tests (and other front ends)
can hand it a fixed :class:`~infrascope_recommender.model.RunResult`:

* ``runner() -> RunResult`` — in production ``pipeline.run(config)``: load the fleet with
  a fixed number of PromQL queries and apply the rules; raises ``PrometheusError`` when
  Prometheus is unreachable or errors.
* ``history() -> [("YYYY-MM", Decimal euros), ...]`` — in production
  ``loader.cost_history(...)``; asked lazily by ``GET /api/costs/history`` and cached.

A regeneration runs the engine, merges the result into the state
(:meth:`~infrascope_recommender.state.Store.record_run`) and, if configured, pushes the
annotations to Grafana. A failed regeneration is logged in the run history, flips
readiness to "not ready" with the reason, and leaves every decision as it was — the
previous fleet stays served, marked by its ``loaded_at`` time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from .annotations import GrafanaError, GrafanaPusher, PushResult
from .config import Secret
from .model import Fleet, RunResult
from .state import RunRecord, Store, StoredRecommendation

log = logging.getLogger(__name__)

Runner = Callable[[], RunResult]
History = Callable[[], list[tuple[str, Decimal]]]

OUTCOMES = ("success", "prometheus_error", "error")
HISTORY_TTL_SECONDS = 3600.0  # monthly totals change slowly; one query an hour is plenty


class RunFailed(Exception):
    """A regeneration failed; ``str()`` says why (for Prometheus: the URL and the failure)."""

    def __init__(self, message: str, outcome: str = "error") -> None:
        super().__init__(message)
        self.outcome = outcome

    @property
    def prometheus(self) -> bool:
        return self.outcome == "prometheus_error"


class HistoryUnavailable(Exception):
    """The cost history could not be loaded (no loader configured, or Prometheus failed)."""


def is_prometheus_error(exc: BaseException) -> bool:
    """``True`` for the query client's ``PrometheusError`` (imported lazily)."""
    try:
        from .promql import PrometheusError
    except ImportError:  # the query client is not installed in this build
        return False
    return isinstance(exc, PrometheusError)


@dataclass
class Attempt:
    """The last regeneration this process tried (successful or not)."""

    started_at: float
    duration_seconds: float
    outcome: str
    error: str | None = None
    run_id: int | None = None
    queries: int | None = None

    @property
    def success(self) -> bool:
        return self.outcome == "success"


@dataclass
class RunOutcome:
    run: RunRecord
    result: RunResult
    push: PushResult | None = None


@dataclass
class PushStatus:
    last_attempt: float | None = None
    success: bool | None = None
    error: str | None = None


@dataclass
class _HistoryCache:
    at: float = 0.0
    months: list[tuple[str, Decimal]] = field(default_factory=list)


class RecommenderService:
    """Holds the last result, runs regenerations, answers readiness; thread-safe."""

    def __init__(self, store: Store, runner: Runner, history: History | None = None, *,
                 api_token: Secret | None = None, pusher: GrafanaPusher | None = None,
                 prometheus_url: str = "", dashboard_url: str | None = None,
                 clock: Callable[[], float] = time.time,
                 push_in_background: bool = True) -> None:
        self.store = store
        self.runner = runner
        self.history = history
        self.api_token = api_token
        self.pusher = pusher
        self.prometheus_url = prometheus_url
        self.dashboard_url = dashboard_url
        self.clock = clock
        self.push_in_background = push_in_background
        self.started_at = clock()
        self.last_result: RunResult | None = None  # the last successful run
        self.last_attempt: Attempt | None = None
        self.runs_total: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.push_status = PushStatus()
        self._run_lock = threading.Lock()
        self._push_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._history = _HistoryCache()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- regeneration --------------------------------------------------------------------

    def regenerate(self) -> RunOutcome:
        """Run the engine once and record the result; raises :class:`RunFailed`.

        Serialised: a request arriving while the scheduler runs waits for it, then runs.
        """
        with self._run_lock:
            started = self.clock()
            t0 = time.monotonic()
            try:
                result = self.runner()
            except Exception as exc:  # every failure is reported, none crashes serve
                duration = time.monotonic() - t0
                outcome = "prometheus_error" if is_prometheus_error(exc) else "error"
                message = str(exc) or type(exc).__name__
                if outcome == "error":
                    log.error("regeneration failed", exc_info=True,
                              extra={"event": "run", "outcome": outcome})
                else:
                    log.warning("regeneration failed: %s", message,
                                extra={"event": "run", "outcome": outcome})
                run_id = self.store.record_failure(started, duration, message)
                self._finish(Attempt(started, duration, outcome, message, run_id))
                raise RunFailed(message, outcome) from exc
            duration = time.monotonic() - t0
            if not result.duration_seconds:
                result.duration_seconds = duration
            run_id = self.store.record_run(result)
            run = self.store.run(run_id)
            with self._state_lock:
                self.last_result = result
            self._finish(Attempt(result.started_at, result.duration_seconds, "success",
                                 run_id=run_id, queries=result.fleet.queries))
            log.info("regenerated", extra={
                "event": "run", "outcome": "success", "run_id": run_id,
                "generated": run.generated, "new": run.new, "stale": run.stale,
                "pending": run.pending, "pending_savings_euros": str(run.pending_savings),
                "queries": result.fleet.queries,
                "duration_seconds": round(result.duration_seconds, 3)})
        push = self.push_annotations()
        return RunOutcome(run, result, push)

    def _finish(self, attempt: Attempt) -> None:
        with self._state_lock:
            self.last_attempt = attempt
            self.runs_total[attempt.outcome] = self.runs_total.get(attempt.outcome, 0) + 1

    @property
    def fleet(self) -> Fleet | None:
        """The fleet of the last successful run (``None`` until there is one)."""
        with self._state_lock:
            return self.last_result.fleet if self.last_result else None

    def readiness(self) -> tuple[bool, str]:
        """Ready after a successful run; otherwise why not (for ``/readyz``)."""
        with self._state_lock:
            attempt = self.last_attempt
        if attempt is None:
            return False, "no run yet: the first regeneration has not finished"
        if not attempt.success:
            return False, f"the last run failed: {attempt.error}"
        return True, "ready"

    # --- decisions (the store, plus keeping Grafana in step) -----------------------------

    def accept(self, rec_id: str, by: str | None = None,
               note: str | None = None) -> StoredRecommendation:
        item = self.store.accept(rec_id, by=by, note=note)
        self._after_decision()
        return item

    def dismiss(self, rec_id: str, reason: str, until: datetime | None = None,
                by: str | None = None) -> StoredRecommendation:
        item = self.store.dismiss(rec_id, reason, until=until, by=by)
        self._after_decision()
        return item

    def reopen(self, rec_id: str, by: str | None = None,
               note: str | None = None) -> StoredRecommendation:
        item = self.store.reopen(rec_id, by=by, note=note)
        self._after_decision()
        return item

    def _after_decision(self) -> None:
        if self.pusher is None:
            return
        if self.push_in_background:
            threading.Thread(target=self.push_annotations, name="grafana-push",
                             daemon=True).start()
        else:
            self.push_annotations()

    def push_annotations(self) -> PushResult | None:
        """Bring Grafana's annotations in line with the state; failures are logged only."""
        if self.pusher is None:
            return None
        with self._push_lock:
            self.push_status.last_attempt = self.clock()
            try:
                result = self.pusher.push(self.store.list())
            except GrafanaError as exc:
                self.push_status.success = False
                self.push_status.error = str(exc)
                log.warning("grafana push failed: %s", exc, extra={"event": "grafana_push"})
                return None
            self.push_status.success = True
            self.push_status.error = None
            return result

    # --- cost history --------------------------------------------------------------------

    def cost_history(self) -> list[tuple[str, Decimal]]:
        """Monthly totals for the last 12 months (cached for an hour)."""
        if self.history is None:
            raise HistoryUnavailable("no cost history loader is configured")
        with self._state_lock:
            cache = self._history
            if cache.months and self.clock() - cache.at < HISTORY_TTL_SECONDS:
                return list(cache.months)
        try:
            months = self.history()
        except Exception as exc:
            if not is_prometheus_error(exc):
                log.error("cost history failed", exc_info=True, extra={"event": "history"})
            raise HistoryUnavailable(str(exc) or type(exc).__name__) from exc
        with self._state_lock:
            self._history = _HistoryCache(self.clock(), list(months))
        return list(months)

    # --- schedule ------------------------------------------------------------------------

    def start(self, interval_seconds: float) -> None:
        """Regenerate now (in the background) and then every ``interval_seconds``."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(interval_seconds,),
                                        name="regenerate", daemon=True)
        self._thread.start()

    def _loop(self, interval_seconds: float) -> None:
        while not self._stop.is_set():
            try:
                self.regenerate()
            except RunFailed:
                pass  # logged, recorded, and visible in /readyz and /metrics
            except Exception:
                log.exception("regeneration crashed", extra={"event": "run"})
            self._stop.wait(interval_seconds)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the schedule; waits up to ``timeout`` for a regeneration in progress.

        Returns ``False`` if one is still running (a slow Prometheus): the caller may exit
        anyway — its transaction has not begun or rolls back, the state stays consistent.
        """
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("stopping while a regeneration is still running",
                            extra={"event": "stop"})
                return False
        return True

    def close(self, timeout: float = 10.0) -> None:
        stopped = self.stop(timeout)
        if self.pusher is not None:
            self.pusher.close()
        if stopped:  # else the running regeneration still uses the connection
            self.store.close()
