"""Prometheus conventions on /metrics (issue 12, point 7).

``infrascope_exporter_build_info`` and the standard ``process_*`` / ``python_info``
series, the latter collected at each scrape (not frozen in the cached rendering), in
a plain and a gzip body that every client decodes (one gzip member), and the whole
served exposition passes ``promtool check metrics``.
"""

from __future__ import annotations

import platform
import time
import zlib

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter_testlib import demo_config_data, refresh_all, serving
from infrascope_core.prometheus import Promtool
from infrascope_exporter import __version__
from infrascope_exporter.exporter import Exporter

PROCESS_FAMILIES = {"process_cpu_seconds", "process_resident_memory_bytes",
                    "process_virtual_memory_bytes", "process_start_time_seconds",
                    "process_open_fds", "process_max_fds", "python_info"}


def samples(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


@pytest.fixture
def exporter(served, make_config):
    exporter = Exporter(make_config(demo_config_data(served)))
    refresh_all(exporter, metrics=True)
    yield exporter
    exporter.stop()


def test_build_info_and_process_series_are_served(exporter: Exporter) -> None:
    with serving(exporter) as base:
        plain = httpx.get(base + "/metrics", headers={"Accept-Encoding": "identity"})
        # httpx decodes gzip itself, and only the first member of a gzip stream: the
        # body must be one member for it to see the process series
        decoded = httpx.get(base + "/metrics", headers={"Accept-Encoding": "gzip"})
    assert decoded.headers["content-encoding"] == "gzip"
    for body in (plain.text, decoded.text):
        fams = samples(body)
        assert PROCESS_FAMILIES <= set(fams), sorted(PROCESS_FAMILIES - set(fams))
        (info,) = fams["infrascope_exporter_build_info"]
        assert info.value == 1
        assert info.labels["version"] == __version__
        assert info.labels["python_version"] == platform.python_version()
        assert info.labels["python_implementation"] == platform.python_implementation()
        assert set(info.labels) == {"version", "revision", "python_version",
                                    "python_implementation"}
        (start,) = fams["process_start_time_seconds"]
        assert time.time() - 3600 < start.value <= time.time()
        (rss,) = fams["process_resident_memory_bytes"]
        assert rss.value > 1_000_000
        # the series count covers what a scrape gets
        (series,) = fams["hetzner_exporter_series"]
        assert series.value == sum(len(s) for s in fams.values())


def test_the_gzip_body_is_one_member(exporter: Exporter) -> None:
    body = exporter.exposition(gzipped=True)
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = d.decompress(body)
    assert d.eof and d.unused_data == b""
    assert text.startswith(exporter.rendered) and b"process_cpu_seconds_total" in text


def test_process_series_are_collected_at_scrape_time(exporter: Exporter) -> None:
    def cpu(text: str) -> float:
        return samples(text)["process_cpu_seconds"][0].value

    rendered = exporter.rendered
    first = exporter.exposition().decode()
    deadline = time.process_time() + 0.5  # burn CPU in this (the exporter's) process
    while time.process_time() < deadline:
        pass
    second = exporter.exposition().decode()
    third = zlib.decompress(exporter.exposition(gzipped=True), 16 + zlib.MAX_WBITS).decode()
    assert exporter.rendered == rendered  # no re-rendering in between
    assert cpu(second) >= cpu(first) + 0.3
    assert cpu(third) >= cpu(second)


def test_promtool_check_metrics_on_the_served_exposition(promtool: Promtool,
                                                        exporter: Exporter) -> None:
    result = promtool.check_metrics(exporter.exposition())
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_revision_comes_from_the_environment_when_set(monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    from infrascope_exporter import build

    build.build_info_labels.cache_clear()
    monkeypatch.setenv("INFRASCOPE_REVISION", "0123abcd")
    try:
        assert build.build_info_labels()["revision"] == "0123abcd"
    finally:
        build.build_info_labels.cache_clear()
