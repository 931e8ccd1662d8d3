"""The service glue: regeneration, failures, readiness, cost history cache, schedule, push."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import service_fixtures as fx

from infrascope_recommender.promql import PrometheusError
from infrascope_recommender.service import (
    HistoryUnavailable,
    RecommenderService,
    RunFailed,
)
from infrascope_recommender.state import Store

PROM = "http://127.0.0.1:9/prometheus"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "s.db") as s:
        yield s


def test_regenerate_records_and_becomes_ready(store: Store) -> None:
    service = RecommenderService(store, fx.Runner(fx.run_result()))
    assert service.readiness() == (False, "no run yet: the first regeneration has not "
                                          "finished")
    assert service.fleet is None
    outcome = service.regenerate()
    assert outcome.run.pending == 5 and outcome.run.pending_savings == Decimal("52.39")
    assert outcome.push is None
    assert service.readiness() == (True, "ready")
    assert service.fleet is not None and len(service.fleet.servers) == 7
    assert service.runs_total == {"success": 1, "prometheus_error": 0, "error": 0}
    assert service.last_attempt is not None and service.last_attempt.queries == 14
    assert len(store.list(status="pending")) == 5


def test_prometheus_failure_keeps_state_and_reports_the_url(store: Store) -> None:
    error = PrometheusError(f"Prometheus at {PROM}: connection refused", url=PROM)
    service = RecommenderService(store, fx.Runner(fx.run_result(), error))
    service.regenerate()
    store.accept(fx.idle().id)
    with pytest.raises(RunFailed) as info:
        service.regenerate()
    assert info.value.prometheus and PROM in str(info.value)
    ready, reason = service.readiness()
    assert not ready and reason == f"the last run failed: Prometheus at {PROM}: connection " \
                                   "refused"
    assert service.fleet is not None  # the previous fleet is still served
    assert store.get(fx.idle().id).status == "accepted"
    assert len(store.list(status="pending")) == 4  # nothing removed by the failed run
    last = store.last_run()
    assert last is not None and not last.success and PROM in (last.error or "")
    assert service.runs_total["prometheus_error"] == 1


def test_other_failures_are_errors(store: Store) -> None:
    service = RecommenderService(store, fx.Runner(RuntimeError("rule crashed")))
    with pytest.raises(RunFailed, match="rule crashed") as info:
        service.regenerate()
    assert info.value.outcome == "error" and not info.value.prometheus
    assert service.runs_total["error"] == 1
    assert service.readiness()[0] is False


def test_regenerations_are_serialised(store: Store) -> None:
    runner = fx.Runner(fx.run_result())
    service = RecommenderService(store, runner)
    threads = [threading.Thread(target=service.regenerate) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert runner.calls == 5 and runner.max_active == 1
    assert len(store.runs()) == 5


def test_cost_history_is_cached_and_failures_are_reported(store: Store) -> None:
    now = [fx.T0]
    calls: list[int] = []
    months = [("2025-05", Decimal("90.10")), ("2025-06", Decimal("96.27"))]

    def history() -> list[tuple[str, Decimal]]:
        calls.append(1)
        if len(calls) == 3:
            raise PrometheusError(f"Prometheus at {PROM}: timed out after 30s", url=PROM)
        return months

    service = RecommenderService(store, fx.Runner(fx.run_result()), history,
                                 clock=lambda: now[0])
    assert service.cost_history() == months
    assert service.cost_history() == months
    assert len(calls) == 1  # cached
    now[0] += 3601
    assert service.cost_history() == months and len(calls) == 2
    now[0] += 3601
    with pytest.raises(HistoryUnavailable, match="timed out"):
        service.cost_history()
    with pytest.raises(HistoryUnavailable, match="no cost history"):
        RecommenderService(store, fx.Runner(fx.run_result())).cost_history()


def test_schedule_runs_at_start_and_then_periodically(store: Store) -> None:
    runner = fx.Runner(fx.run_result())
    service = RecommenderService(store, runner)
    service.start(0.05)
    deadline = time.monotonic() + 10
    while runner.calls < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    service.stop()
    calls = runner.calls
    assert calls >= 3
    time.sleep(0.15)
    assert runner.calls == calls  # stopped for good
    assert service.readiness()[0]


def test_schedule_survives_failures(store: Store) -> None:
    error = PrometheusError(f"Prometheus at {PROM}: HTTP 503", url=PROM)
    runner = fx.Runner(error, error, fx.run_result())
    service = RecommenderService(store, runner)
    service.start(0.02)
    deadline = time.monotonic() + 10
    while not service.readiness()[0] and time.monotonic() < deadline:
        time.sleep(0.01)
    service.stop()
    assert service.readiness()[0]
    assert service.runs_total["prometheus_error"] == 2


def test_push_after_runs_and_decisions(store: Store) -> None:
    pusher = fx.RecordingPusher()
    service = RecommenderService(store, fx.Runner(fx.run_result()), pusher=pusher,
                                 push_in_background=False)
    outcome = service.regenerate()
    assert outcome.push is not None and outcome.push.created == 5
    service.dismiss(fx.idle().id, "DR standby")
    assert pusher.pushed[-1][fx.idle().id] == "dismissed"
    service.accept(fx.rightsize().id, by="alice")
    assert pusher.pushed[-1][fx.rightsize().id] == "accepted"
    service.reopen(fx.idle().id)
    assert pusher.pushed[-1][fx.idle().id] == "pending"
    assert len(pusher.pushed) == 4
    assert service.push_status.success is True


def test_push_in_background_after_a_decision(store: Store) -> None:
    pusher = fx.RecordingPusher()
    service = RecommenderService(store, fx.Runner(fx.run_result()), pusher=pusher)
    service.regenerate()
    service.dismiss(fx.idle().id, "DR standby")
    deadline = time.monotonic() + 5
    while len(pusher.pushed) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pusher.pushed[-1][fx.idle().id] == "dismissed"


def test_push_failure_does_not_fail_the_run(store: Store) -> None:
    service = RecommenderService(store, fx.Runner(fx.run_result()), pusher=fx.RecordingPusher(True))
    outcome = service.regenerate()
    assert outcome.push is None and outcome.run.pending == 5
    assert service.push_status.success is False
    assert "HTTP 500" in (service.push_status.error or "")
    assert service.readiness()[0]
