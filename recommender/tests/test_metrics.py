"""/metrics: promtool-clean exposition with the right values."""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import service_fixtures as fx
from prometheus_client.parser import text_string_to_metric_families

from infrascope_core.prometheus import Promtool
from infrascope_recommender.config import Secret
from infrascope_recommender.metrics import registry_for, render
from infrascope_recommender.promql import PrometheusError
from infrascope_recommender.service import RecommenderService, RunFailed
from infrascope_recommender.state import Store


def samples(service: RecommenderService) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render(registry_for(service)).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(data: dict, name: str, **labels: str) -> float:
    return data[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "s.db") as s:
        yield s


def test_exposition_passes_promtool(store: Store) -> None:
    service = RecommenderService(store, fx.Runner(fx.run_result()), pusher=fx.RecordingPusher(),
                                 api_token=Secret("api-secret-token"),
                                 push_in_background=False)
    service.regenerate()
    service.dismiss(fx.idle().id, "DR standby")
    text = render(registry_for(service))
    check = Promtool().check_metrics(text)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout == "" and check.stderr == ""
    assert b"api-secret-token" not in text


def test_values(store: Store) -> None:
    error = PrometheusError("Prometheus at http://127.0.0.1:9: connection refused")
    service = RecommenderService(store, fx.Runner(fx.run_result(), error))
    before = samples(service)
    assert value(before, "infrascope_recommender_ready") == 0
    assert value(before, "infrascope_recommendations_monthly_savings_euros",
                 status="pending") == 0
    assert ("infrascope_recommender_last_run_timestamp_seconds", ()) not in before
    assert value(before, "infrascope_recommender_build_info", version="0.1.0",
                 python_version=platform.python_version()) == 1

    service.regenerate()
    store.accept(fx.rightsize().id)
    store.dismiss(fx.underprovisioned().id, "not worth it")
    data = samples(service)
    rightsize = fx.rightsize()
    assert value(data, "infrascope_recommendation_monthly_savings_euros",
                 id=rightsize.id, kind="rightsize", action="change_type", status="accepted",
                 source="cloud", server_id="101", server_names="web-1", project="shop",
                 target_type="cx22") == pytest.approx(12.61)
    assert value(data, "infrascope_recommendation_monthly_savings_euros",
                 id=fx.consolidation().id, kind="consolidation", action="merge",
                 status="pending", source="cloud", server_id="103,104",
                 server_names="stg-1,stg-2", project="staging",
                 target_type="cx22") == pytest.approx(3.79)
    per_rec = {labels: v for (name, labels), v in data.items()
               if name == "infrascope_recommendation_monthly_savings_euros"}
    assert len(per_rec) == 4  # pending and accepted, not the dismissed one
    pending_total = sum(v for labels, v in per_rec.items() if ("status", "pending") in labels)
    expected = Decimal("16.40") + Decimal("3.79") + Decimal("22.60")
    assert pending_total == pytest.approx(float(expected))
    assert value(data, "infrascope_recommendations_monthly_savings_euros",
                 status="pending") == pytest.approx(float(expected))
    assert value(data, "infrascope_recommendations_monthly_savings_euros",
                 status="dismissed") == pytest.approx(-3.01)
    assert value(data, "infrascope_recommendations", kind="rightsize", status="accepted") == 1
    assert value(data, "infrascope_recommendations", kind="rightsize", status="pending") == 0
    assert value(data, "infrascope_recommendations", kind="idle", status="pending") == 1
    assert value(data, "infrascope_recommender_last_run_success") == 1
    assert value(data, "infrascope_recommender_last_run_duration_seconds") == 1.25
    assert value(data, "infrascope_recommender_last_run_timestamp_seconds") == fx.T0
    assert value(data, "infrascope_recommender_last_success_timestamp_seconds") == fx.T0
    assert value(data, "infrascope_recommender_last_run_promql_queries") == 14
    # by cause, every cause present (a sum over them is the old total)
    assert value(data, "infrascope_recommender_last_run_excluded_servers", cause="data") == 1
    for cause in ("inventory", "target", "ha"):
        assert value(data, "infrascope_recommender_last_run_excluded_servers",
                     cause=cause) == 0
    assert value(data, "infrascope_recommender_runs_total", outcome="success") == 1
    assert value(data, "infrascope_recommender_ready") == 1
    assert ("infrascope_recommender_grafana_push_success", ()) not in data

    with pytest.raises(RunFailed):
        service.regenerate()
    data = samples(service)
    assert value(data, "infrascope_recommender_last_run_success") == 0
    assert value(data, "infrascope_recommender_last_run_timestamp_seconds") > fx.T0
    assert value(data, "infrascope_recommender_last_success_timestamp_seconds") == fx.T0
    assert value(data, "infrascope_recommender_runs_total", outcome="prometheus_error") == 1
    assert value(data, "infrascope_recommender_ready") == 0
    # decisions and savings survive the failed run
    assert value(data, "infrascope_recommendations_monthly_savings_euros",
                 status="pending") == pytest.approx(float(expected))


def test_grafana_push_gauge(store: Store) -> None:
    failing = RecommenderService(store, fx.Runner(fx.run_result()), pusher=fx.RecordingPusher(True))
    failing.regenerate()
    assert value(samples(failing), "infrascope_recommender_grafana_push_success") == 0
    working = RecommenderService(store, fx.Runner(fx.run_result()), pusher=fx.RecordingPusher())
    working.regenerate()
    assert value(samples(working), "infrascope_recommender_grafana_push_success") == 1


def _without_process(text: bytes) -> list[bytes]:
    return [line for line in text.splitlines() if b"process_" not in line]


def test_cached_rows_follow_writes_from_another_process(store: Store, tmp_path: Path) -> None:
    service = RecommenderService(store, fx.Runner(fx.run_result()))
    service.regenerate()
    registry = registry_for(service)
    before = render(registry)
    # unchanged state: the cached rows (process_* move on their own: CPU time, memory)
    assert _without_process(render(registry)) == _without_process(before)
    with Store(tmp_path / "s.db") as other:  # e.g. `recommender run` from cron
        other.dismiss(fx.idle().id, "DR standby")
    after = render(registry).decode()
    assert f'id="{fx.idle().id}"' in before.decode() and f'id="{fx.idle().id}"' not in after


def test_process_series_of_the_recommender_itself(store: Store) -> None:
    service = RecommenderService(store, fx.Runner(fx.run_result()))
    data = samples(service)
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_virtual_memory_bytes", "process_open_fds", "process_max_fds"):
        assert value(data, name) > 0, name
    started = value(data, "process_start_time_seconds")
    assert time.time() - 3600 < started <= time.time()
    [info] = [labels for (name, labels) in data if name == "infrascope_recommender_build_info"]
    assert dict(info) == {"version": "0.1.0", "python_version": platform.python_version()}
